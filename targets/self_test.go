package targets

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	mcfake "admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned/fake"
	mcinformers "admiralty.io/multicluster-scheduler/apis/generated/informers/externalversions"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

func selfChaperon() *v1alpha1.PodChaperon {
	return &v1alpha1.PodChaperon{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-abcde", Namespace: "ns",
			Labels: map[string]string{
				v1alpha1.LabelParentClusterName:  "c1",
				v1alpha1.LabelParentUID:          "uid-1",
				v1alpha1.PrefixedLabelKey("app"): "web",
			},
			Annotations: map[string]string{v1alpha1.AnnotationParentName: "web", v1alpha1.AnnotationParentNamespace: "ns"},
		},
		Spec: corev1.PodSpec{
			SchedulerName: v1alpha1.CandidateSchedulerName,
			NodeName:      "stale",
			Priority:      ptr.To[int32](7),
			Containers:    []corev1.Container{{Name: "c", Image: "nginx"}},
		},
	}
}

// A self target's chaperon is its delegate: creating one creates the pod
// (and no PodChaperon), the pod reads back as a chaperon whose status is
// the pod's and whose status.nodeName is the pod's node, and lists select
// delegates only.
func TestSelfChaperonsAreDelegates(t *testing.T) {
	ctx := context.Background()
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "ns", Labels: map[string]string{v1alpha1.LabelParentClusterName: "c1"}}}
	kube := kubefake.NewClientset(other)
	mc := mcfake.NewSimpleClientset()
	client := SelfChaperons(mc, kube.CoreV1()).MulticlusterV1alpha1().PodChaperons("ns")

	created, err := client.Create(ctx, selfChaperon(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.Name != "web-abcde" || created.Labels[v1alpha1.LabelParentUID] != "uid-1" {
		t.Errorf("created chaperon %s labels %v", created.Name, created.Labels)
	}
	pod, err := kube.CoreV1().Pods("ns").Get(ctx, "web-abcde", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the delegate was not created: %v", err)
	}
	if pod.Spec.NodeName != "" || pod.Spec.Priority != nil || pod.Spec.SchedulerName != v1alpha1.CandidateSchedulerName {
		t.Errorf("delegate spec: nodeName %q, priority %v, scheduler %q; want it left to the cluster's candidate profile",
			pod.Spec.NodeName, pod.Spec.Priority, pod.Spec.SchedulerName)
	}
	if pod.Annotations[v1alpha1.AnnotationParentName] != "web" || pod.Labels[v1alpha1.PrefixedLabelKey("app")] != "web" {
		t.Errorf("delegate metadata: labels %v annotations %v", pod.Labels, pod.Annotations)
	}
	if real, _ := mc.MulticlusterV1alpha1().PodChaperons("ns").List(ctx, metav1.ListOptions{}); len(real.Items) != 0 {
		t.Errorf("%d PodChaperons created, want none", len(real.Items))
	}

	// Bound and running: the chaperon shows the verdict and the status.
	pod.Spec.NodeName = "n1"
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"}
	if _, err := kube.CoreV1().Pods("ns").Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := client.Get(ctx, "web-abcde", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.NodeName != "n1" || got.Status.Phase != corev1.PodRunning || got.Status.PodIP != "10.0.0.1" {
		t.Errorf("chaperon status %+v, want the delegate's, on n1", got.Status)
	}
	if got.Kind != "PodChaperon" {
		t.Errorf("kind %q", got.Kind)
	}

	list, err := client.List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelParentClusterName + "=c1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != "web-abcde" {
		t.Errorf("listed %d chaperons (%v), want the delegate only, not pod other", len(list.Items), list.Items)
	}

	for name, err := range map[string]error{
		"Update":       func() error { _, err := client.Update(ctx, got, metav1.UpdateOptions{}); return err }(),
		"UpdateStatus": func() error { _, err := client.UpdateStatus(ctx, got, metav1.UpdateOptions{}); return err }(),
	} {
		if !apierrors.IsMethodNotSupported(err) {
			t.Errorf("%s: %v, want MethodNotSupported", name, err)
		}
	}
}

// Deleting a self target's chaperon deletes its delegate, without the
// foreground propagation a chaperon's deletion may ask for (a pod has no
// dependents; it would only get a finalizer), keeping the preconditions.
func TestSelfChaperonDeleteDeletesTheDelegate(t *testing.T) {
	ctx := context.Background()
	kube := kubefake.NewClientset()
	var opts *metav1.DeleteOptions
	kube.PrependReactor("delete", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		o := a.(clienttesting.DeleteActionImpl).DeleteOptions
		opts = &o
		return false, nil, nil
	})
	client := SelfChaperons(mcfake.NewSimpleClientset(), kube.CoreV1()).MulticlusterV1alpha1().PodChaperons("ns")
	created, err := client.Create(ctx, selfChaperon(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	foreground := metav1.DeletePropagationForeground
	uid := created.UID
	err = client.Delete(ctx, created.Name, metav1.DeleteOptions{PropagationPolicy: &foreground, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil {
		t.Fatal(err)
	}
	if opts == nil || opts.PropagationPolicy != nil || opts.Preconditions == nil {
		t.Errorf("delete options %+v, want no propagation policy and the preconditions", opts)
	}
	if _, err := kube.CoreV1().Pods("ns").Get(ctx, created.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("delegate after delete: %v, want NotFound", err)
	}
}

// The generated informer on a self target's clientset lists and watches
// delegates as PodChaperons: what the scheduler's verdicts and the
// feedback read.
func TestSelfChaperonInformer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kube := kubefake.NewClientset()
	mc := SelfChaperons(mcfake.NewSimpleClientset(), kube.CoreV1())
	if _, err := mc.MulticlusterV1alpha1().PodChaperons("ns").Create(ctx, selfChaperon(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	factory := mcinformers.NewSharedInformerFactory(mc, 0)
	inf := factory.Multicluster().V1alpha1().PodChaperons().Informer()
	events := make(chan *v1alpha1.PodChaperon, 10)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { events <- obj.(*v1alpha1.PodChaperon) },
		UpdateFunc: func(_, obj any) { events <- obj.(*v1alpha1.PodChaperon) },
	})
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("not synced")
	}
	next := func() *v1alpha1.PodChaperon {
		select {
		case ch := <-events:
			return ch
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return nil
	}
	if ch := next(); ch.Name != "web-abcde" || ch.Status.NodeName != "" {
		t.Errorf("listed %s on %q", ch.Name, ch.Status.NodeName)
	}
	pod, err := kube.CoreV1().Pods("ns").Get(ctx, "web-abcde", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Spec.NodeName = "n1"
	if _, err := kube.CoreV1().Pods("ns").Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ch := next(); ch.Status.NodeName != "n1" {
		t.Errorf("watched chaperon on %q, want n1", ch.Status.NodeName)
	}
}

// Watch events of other kinds (errors) pass unchanged.
func TestSelfWatchPassesErrors(t *testing.T) {
	kube := kubefake.NewClientset()
	fw := watch.NewFake()
	kube.PrependWatchReactor("pods", clienttesting.DefaultWatchReactor(fw, nil))
	client := SelfChaperons(mcfake.NewSimpleClientset(), kube.CoreV1()).MulticlusterV1alpha1().PodChaperons("ns")
	w, err := client.Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	go func() {
		fw.Add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "d", Labels: map[string]string{v1alpha1.LabelParentUID: "u"}}})
		fw.Error(&metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonExpired})
	}()
	if e := <-w.ResultChan(); e.Type != watch.Added {
		t.Errorf("event %v", e.Type)
	} else if ch, ok := e.Object.(*v1alpha1.PodChaperon); !ok || ch.Name != "d" {
		t.Errorf("object %T, want the delegate as a PodChaperon", e.Object)
	}
	if e := <-w.ResultChan(); e.Type != watch.Error {
		t.Errorf("event %v, want Error", e.Type)
	} else if _, ok := e.Object.(*metav1.Status); !ok {
		t.Errorf("object %T, want the Status", e.Object)
	}
}

// A delegate is the pod its chaperon controls, or in a self target the
// pod its chaperon is.
func TestIsDelegateOf(t *testing.T) {
	ch := &v1alpha1.PodChaperon{ObjectMeta: metav1.ObjectMeta{Name: "d", UID: "ch-uid"}}
	controlled := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "d", UID: "pod-uid"}}
	controlled.OwnerReferences = []metav1.OwnerReference{{UID: "ch-uid", Controller: ptr.To(true)}}
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "d", UID: "pod-uid",
		OwnerReferences: []metav1.OwnerReference{{UID: "older-ch-uid", Controller: ptr.To(true)}}}}
	bare := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "d", UID: "pod-uid"}}
	self := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "d", UID: "pod-uid"}}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		ch   *v1alpha1.PodChaperon
		want bool
	}{
		{"controlled", controlled, ch, true},
		{"another chaperon's", other, ch, false},
		{"no controller", bare, ch, false},
		{"a self target's, its own chaperon", self, ChaperonOf(self), true},
	} {
		if got := IsDelegateOf(tc.pod, tc.ch); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
