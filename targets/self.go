package targets

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	mcv1alpha1 "admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned/typed/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// SelfChaperons returns mc, whose PodChaperons, in a cluster that targets
// itself, are its delegates: a source and its self target share one API
// server, so the proxy's delegate is made at once, by the source, with no
// PodChaperon between them.
//
// A PodChaperon carries nothing a delegate does not: its metadata and spec
// are the delegate's, its status the delegate's, and its status.nodeName
// the delegate's spec.nodeName. Through the PodChaperon API of this
// clientset, the scheduler's Permit creates the delegate (its target's
// verdict is the delegate's binding, or the PodScheduled=False condition
// its scheduler writes on it), and the feedback, the kubelet endpoint, the
// Target's cleanup and its health check read and delete delegates where
// they would read and delete chaperons. Per pod, this saves the chaperon's
// creation, its status writes and its deletion, each a watch event for the
// source's scheduler and both delegators' informers, and the verdict's hold
// for the delegate to start (delegator/chaperon).
//
// Delegates are the pods labeled LabelParentUID; every list and watch of
// this client's PodChaperons selects them, on top of the caller's
// selector. Update and UpdateStatus are refused: no source writes a
// chaperon's spec or status.
func SelfChaperons(mc versioned.Interface, pods corev1client.PodsGetter) versioned.Interface {
	return selfClientset{Interface: mc, pods: pods}
}

type selfClientset struct {
	versioned.Interface
	pods corev1client.PodsGetter
}

func (c selfClientset) MulticlusterV1alpha1() mcv1alpha1.MulticlusterV1alpha1Interface {
	return selfGroup{MulticlusterV1alpha1Interface: c.Interface.MulticlusterV1alpha1(), pods: c.pods}
}

// IsWatchListSemanticsUnSupported has informers list, then watch
// (client-go's util/watchlist): the converting watch below is not a
// streaming list.
func (selfClientset) IsWatchListSemanticsUnSupported() bool { return true }

type selfGroup struct {
	mcv1alpha1.MulticlusterV1alpha1Interface
	pods corev1client.PodsGetter
}

func (g selfGroup) PodChaperons(namespace string) mcv1alpha1.PodChaperonInterface {
	return delegates{pods: g.pods.Pods(namespace)}
}

// delegates is the PodChaperonInterface of a self target.
type delegates struct {
	pods corev1client.PodInterface
}

var _ mcv1alpha1.PodChaperonInterface = delegates{}

// DelegatePod is the pod a chaperon stands for: the chaperon's namespace,
// name, labels and annotations (copies) and its spec, placed by the
// cluster's admiralty-candidate profile, so without nodeName, and without
// the integer priority, which the cluster's Priority admission resolves
// from priorityClassName. It is a self target's delegate as is; a target's
// chaperon controller adds what ties the pod to its chaperon
// (chaperon.Delegate).
func DelegatePod(ch *v1alpha1.PodChaperon) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        ch.Name,
			Namespace:   ch.Namespace,
			Labels:      maps.Clone(ch.Labels),
			Annotations: maps.Clone(ch.Annotations),
		},
		Spec: *ch.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = ""
	pod.Spec.Priority = nil
	return pod
}

// ChaperonOf is how a self target shows a delegate as its PodChaperon. It
// shares the pod's fields.
func ChaperonOf(pod *corev1.Pod) *v1alpha1.PodChaperon {
	return &v1alpha1.PodChaperon{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "PodChaperon"},
		ObjectMeta: pod.ObjectMeta,
		Spec:       pod.Spec,
		Status:     v1alpha1.PodChaperonStatus{PodStatus: pod.Status, NodeName: pod.Spec.NodeName},
	}
}

// selectDelegates adds the delegates' label to a list's selector.
func selectDelegates(o metav1.ListOptions) metav1.ListOptions {
	if o.LabelSelector == "" {
		o.LabelSelector = v1alpha1.LabelParentUID
	} else {
		o.LabelSelector += "," + v1alpha1.LabelParentUID
	}
	return o
}

func (d delegates) Create(ctx context.Context, ch *v1alpha1.PodChaperon, opts metav1.CreateOptions) (*v1alpha1.PodChaperon, error) {
	pod, err := d.pods.Create(ctx, DelegatePod(ch), opts)
	if err != nil {
		return nil, err
	}
	return ChaperonOf(pod), nil
}

func (d delegates) Update(context.Context, *v1alpha1.PodChaperon, metav1.UpdateOptions) (*v1alpha1.PodChaperon, error) {
	return nil, errSelfWrite("update")
}

func (d delegates) UpdateStatus(context.Context, *v1alpha1.PodChaperon, metav1.UpdateOptions) (*v1alpha1.PodChaperon, error) {
	return nil, errSelfWrite("update the status of")
}

func errSelfWrite(verb string) error {
	return apierrors.NewMethodNotSupported(v1alpha1.SchemeGroupVersion.WithResource("podchaperons").GroupResource(),
		fmt.Sprintf("%s a PodChaperon of a self target (its delegate)", verb))
}

// Delete deletes the delegate, gracefully unless opts say otherwise. A
// pod has no dependents: foreground propagation, which a chaperon's
// deletion may ask for, would only add a finalizer to remove.
func (d delegates) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	opts.PropagationPolicy = nil
	return d.pods.Delete(ctx, name, opts)
}

func (d delegates) DeleteCollection(ctx context.Context, opts metav1.DeleteOptions, listOpts metav1.ListOptions) error {
	opts.PropagationPolicy = nil
	return d.pods.DeleteCollection(ctx, opts, selectDelegates(listOpts))
}

// Get returns the pod of that name as a chaperon, whether a delegate or
// not: a caller tells a chaperon of its own by its labels, as it does in
// other targets.
func (d delegates) Get(ctx context.Context, name string, opts metav1.GetOptions) (*v1alpha1.PodChaperon, error) {
	pod, err := d.pods.Get(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	return ChaperonOf(pod), nil
}

func (d delegates) List(ctx context.Context, opts metav1.ListOptions) (*v1alpha1.PodChaperonList, error) {
	pods, err := d.pods.List(ctx, selectDelegates(opts))
	if err != nil {
		return nil, err
	}
	list := &v1alpha1.PodChaperonList{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "PodChaperonList"},
		ListMeta: pods.ListMeta,
		Items:    make([]v1alpha1.PodChaperon, len(pods.Items)),
	}
	for i := range pods.Items {
		list.Items[i] = *ChaperonOf(&pods.Items[i])
	}
	return list, nil
}

func (d delegates) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := d.pods.Watch(ctx, selectDelegates(opts))
	if err != nil {
		return nil, err
	}
	// Bookmarks carry a pod too (its resourceVersion and annotations);
	// errors carry a Status, passed as is.
	return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
		if pod, ok := e.Object.(*corev1.Pod); ok {
			e.Object = ChaperonOf(pod)
		}
		return e, true
	}), nil
}

// Patch patches the delegate (a merge patch of its metadata reads the
// same on either).
func (d delegates) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*v1alpha1.PodChaperon, error) {
	pod, err := d.pods.Patch(ctx, name, pt, data, opts, subresources...)
	if err != nil {
		return nil, err
	}
	return ChaperonOf(pod), nil
}
