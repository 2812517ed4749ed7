package proxy

import (
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/controller"
	"admiralty.io/multicluster-scheduler/proxypod"
)

// ChaperonName is proxypod.ChaperonName: the name of a proxy's PodChaperon
// (and delegate) in any target.
func ChaperonName(proxy *v1.Pod, sourceCluster string) string {
	return proxypod.ChaperonName(proxy, sourceCluster)
}

// handlerFuncs calls onChange for added and updated chaperons, onDelete
// for deleted ones.
type handlerFuncs struct {
	onChange func(*v1alpha1.PodChaperon)
	onDelete func(*v1alpha1.PodChaperon)
}

func (h handlerFuncs) OnAdd(obj any, _ bool) {
	if c, ok := obj.(*v1alpha1.PodChaperon); ok {
		h.onChange(c)
	}
}

func (h handlerFuncs) OnUpdate(_, obj any) {
	if c, ok := obj.(*v1alpha1.PodChaperon); ok {
		h.onChange(c)
	}
}

func (h handlerFuncs) OnDelete(obj any) {
	if h.onDelete == nil {
		return
	}
	if c, ok := controller.Object(obj).(*v1alpha1.PodChaperon); ok {
		h.onDelete(c)
	}
}

var _ cache.ResourceEventHandler = handlerFuncs{}

func isNotFound(err error) bool      { return apierrors.IsNotFound(err) }
func isAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }
func isConflict(err error) bool      { return apierrors.IsConflict(err) }
