// Package service reroutes Services of the source cluster to delegates: a
// Service whose selector matches proxy pods gets the delegates' prefixed
// selector ("app: nginx" becomes "multicluster.admiralty.io/app: nginx"),
// its original selector kept in an annotation, and is annotated
// io.cilium/global-service=true, so that a Cilium cluster mesh merges its
// endpoints across clusters (the follow controller replicates global
// services to every target). When no proxy matches any more, the original
// selector is restored and the global annotation removed if this
// controller added it.
package service

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/delegator/controller"
)

const (
	// AnnotationOriginalSelector on a rerouted Service holds its original
	// selector, as JSON; it is put back when no proxy matches any more.
	AnnotationOriginalSelector = v1alpha1.GroupName + "/original-selector"
	// AnnotationGlobalAdded records that the reroute added
	// AnnotationGlobalService, so that only then it is removed with it.
	AnnotationGlobalAdded = v1alpha1.GroupName + "/global-service-added"
	// AnnotationGlobalService marks a Service that Cilium cluster mesh
	// merges across clusters.
	AnnotationGlobalService = "io.cilium/global-service"

	// LabelOriginCluster marks the copies that delegators make (see package
	// follow): a copy is never rerouted in the cluster it was copied to.
	LabelOriginCluster = v1alpha1.GroupName + "/origin-cluster"
)

// Event reasons on Services.
const (
	ReasonRerouted = "Rerouted"
	ReasonRestored = "Restored"
)

// IsRerouted tells whether svc was rerouted to delegates.
func IsRerouted(svc *corev1.Service) bool {
	_, ok := svc.Annotations[AnnotationOriginalSelector]
	return ok
}

// IsGlobal tells whether svc is a global service.
func IsGlobal(svc *corev1.Service) bool {
	return svc.Annotations[AnnotationGlobalService] == "true"
}

// Controller reroutes services.
type Controller struct {
	client     kubernetes.Interface
	recorder   record.EventRecorder
	services   corelisters.ServiceLister
	proxies    corelisters.PodLister
	controller *controller.Controller
}

// NewController is the delegator's factory of the service reroute
// controller.
func NewController(_ context.Context, d *app.Delegator) (app.Controller, error) {
	pods := d.Proxies.Core().V1().Pods()
	services := d.KubeInformers.Core().V1().Services()
	c := &Controller{
		client:   d.Client,
		recorder: d.Recorder,
		services: services.Lister(),
		proxies:  pods.Lister(),
	}
	c.controller = controller.New("service-reroute", 2, c.reconcile)
	_, _ = services.Informer().AddEventHandler(c.controller.Handler())
	// A proxy that comes or goes, or changes labels, may change whether
	// the services of its namespace match proxies.
	servicesInformer := services.Informer()
	_, _ = pods.Informer().AddEventHandler(c.controller.MappedHandler(func(obj any) []string {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return nil
		}
		objs, _ := servicesInformer.GetIndexer().ByIndex(cache.NamespaceIndex, pod.Namespace)
		keys := make([]string, 0, len(objs))
		for _, o := range objs {
			if svc, ok := o.(*corev1.Service); ok {
				keys = append(keys, svc.Namespace+"/"+svc.Name)
			}
		}
		return keys
	}))
	c.controller.WaitFor(services.Informer().HasSynced, pods.Informer().HasSynced)
	return c, nil
}

// Name of the control loop.
func (c *Controller) Name() string { return c.controller.Name() }

// Start runs until ctx is done.
func (c *Controller) Start(ctx context.Context) error {
	return c.controller.Start(ctx)
}

func (c *Controller) reconcile(ctx context.Context, key string) (controller.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controller.Result{}, nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return controller.Result{}, nil
	}
	if err != nil {
		return controller.Result{}, err
	}
	if _, ok := svc.Labels[LabelOriginCluster]; ok {
		return controller.Result{}, nil
	}
	original, err := OriginalSelector(svc)
	if err != nil {
		// A hand-edited annotation: say so, do not guess.
		c.recorder.Eventf(svc, corev1.EventTypeWarning, "InvalidOriginalSelector", "annotation %s: %v", AnnotationOriginalSelector, err)
		return controller.Result{}, nil
	}
	proxies, err := c.proxies.Pods(ns).List(labels.Everything())
	if err != nil {
		return controller.Result{}, err
	}
	matches := false
	if len(original) > 0 {
		sel := labels.SelectorFromSet(original)
		for _, p := range proxies {
			if p.DeletionTimestamp == nil && sel.Matches(labels.Set(p.Labels)) {
				matches = true
				break
			}
		}
	}
	want := Desired(svc, original, matches)
	if want == nil {
		return controller.Result{}, nil
	}
	_, err = c.client.CoreV1().Services(ns).Update(ctx, want, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return controller.Result{}, nil // the informer brings the newer one
	}
	if err != nil {
		return controller.Result{}, fmt.Errorf("updating service %s: %w", key, err)
	}
	if matches {
		klog.FromContext(ctx).Info("Rerouted service to delegates", "service", klog.KObj(svc), "selector", want.Spec.Selector)
		c.recorder.Eventf(svc, corev1.EventTypeNormal, ReasonRerouted, "the selector matches proxy pods: selecting their delegates instead (%s), original selector kept in %s", labels.Set(want.Spec.Selector), AnnotationOriginalSelector)
	} else {
		klog.FromContext(ctx).Info("Restored service selector", "service", klog.KObj(svc), "selector", want.Spec.Selector)
		c.recorder.Event(svc, corev1.EventTypeNormal, ReasonRestored, "no proxy pod matches the original selector any more: restored it")
	}
	return controller.Result{}, nil
}

// OriginalSelector is the selector a service had before it was rerouted:
// the annotation's, unless the selector was changed since (a user's new
// selector is the new original); otherwise its selector.
func OriginalSelector(svc *corev1.Service) (map[string]string, error) {
	a, ok := svc.Annotations[AnnotationOriginalSelector]
	if !ok {
		return svc.Spec.Selector, nil
	}
	var original map[string]string
	if err := json.Unmarshal([]byte(a), &original); err != nil {
		return nil, err
	}
	if !maps.Equal(Prefixed(original), svc.Spec.Selector) {
		return svc.Spec.Selector, nil
	}
	return original, nil
}

// Prefixed is a selector of delegates: the keys of the original pods'
// labels prefixed, as on delegates.
func Prefixed(selector map[string]string) map[string]string {
	out := make(map[string]string, len(selector))
	for k, v := range selector {
		out[v1alpha1.PrefixedLabelKey(k)] = v
	}
	return out
}

// Desired is svc as it should be, given its original selector and whether
// that matches proxy pods, or nil if it already is.
func Desired(svc *corev1.Service, original map[string]string, matches bool) *corev1.Service {
	out := svc.DeepCopy()
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	if matches {
		data, _ := json.Marshal(original) // a map of strings always marshals
		out.Spec.Selector = Prefixed(original)
		out.Annotations[AnnotationOriginalSelector] = string(data)
		if !IsGlobal(out) {
			out.Annotations[AnnotationGlobalService] = "true"
			out.Annotations[AnnotationGlobalAdded] = "true"
		}
	} else if IsRerouted(svc) {
		out.Spec.Selector = original
		delete(out.Annotations, AnnotationOriginalSelector)
		if _, ok := out.Annotations[AnnotationGlobalAdded]; ok {
			delete(out.Annotations, AnnotationGlobalAdded)
			delete(out.Annotations, AnnotationGlobalService)
		}
	}
	if maps.Equal(out.Spec.Selector, svc.Spec.Selector) && maps.Equal(out.Annotations, svc.Annotations) {
		return nil
	}
	return out
}
