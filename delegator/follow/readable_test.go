package follow

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	mcfake "admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned/fake"
	mcinformers "admiralty.io/multicluster-scheduler/apis/generated/informers/externalversions"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/controller"
	"admiralty.io/multicluster-scheduler/delegator/service"
	"admiralty.io/multicluster-scheduler/targets"
)

// An ingress is copied to a target while a delegate there is behind one of
// its rerouted services: a target whose chaperon cache has not synced (a
// restart while it is down) shows no delegate, which must not delete the
// copy; once it syncs, the copy is kept (and brought up to date).
func TestAnIngressCopyIsKeptWhileTheTargetIsNotReadable(t *testing.T) {
	ctx := context.Background()
	const cluster = "c1"
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Annotations: map[string]string{service.AnnotationOriginalSelector: `{"app":"web"}`}},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}},
	}
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
	}
	u, _, err := makeCopy(kindIngress, ing, cluster)
	if err != nil {
		t.Fatal(err)
	}
	u.SetNamespace("ns")
	u.SetName("web")
	var cp networkingv1.Ingress
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &cp); err != nil {
		t.Fatal(err)
	}
	chaperon := &v1alpha1.PodChaperon{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1", Labels: map[string]string{"app": "web"}}}

	local := informers.NewSharedInformerFactory(kubefake.NewClientset(), 0)
	c := &Source{
		clusterName: cluster,
		recorder:    &record.FakeRecorder{},
		local: map[*kind]cache.SharedIndexInformer{
			kindConfigMap: local.Core().V1().ConfigMaps().Informer(),
			kindSecret:    local.Core().V1().Secrets().Informer(),
			kindService:   local.Core().V1().Services().Informer(),
			kindIngress:   local.Networking().V1().Ingresses().Informer(),
		},
		targets: map[targets.Ref]*targetState{},
		written: map[string]writtenCopy{},
	}
	c.controller = controller.New("follow", 1, c.reconcile)
	for _, o := range []any{svc, ing} {
		k := kindService
		if _, ok := o.(*networkingv1.Ingress); ok {
			k = kindIngress
		}
		if err := c.local[k].GetStore().Add(o); err != nil {
			t.Fatal(err)
		}
	}

	mc := mcfake.NewSimpleClientset(chaperon)
	tkube := kubefake.NewClientset(&cp)
	dyn := dynamicfake.NewSimpleDynamicClient(scheme.Scheme, cp.DeepCopy())
	tgt := &targets.Target{Ref: targets.Ref{Namespace: "ns", Name: "c2"}, Scope: "ns", MCClient: mc, Dynamic: dyn,
		Chaperons: mcinformers.NewSharedInformerFactoryWithOptions(mc, 0, mcinformers.WithNamespace("ns"))}
	copies := informers.NewSharedInformerFactoryWithOptions(tkube, 0, informers.WithNamespace("ns"))
	st := &targetState{t: tgt, dyn: dyn, factory: copies,
		chaperons: tgt.Chaperons.Multicluster().V1alpha1().PodChaperons().Informer(),
		copies: map[*kind]cache.SharedIndexInformer{
			kindService: copies.Core().V1().Services().Informer(),
			kindIngress: copies.Networking().V1().Ingresses().Informer(),
		}}
	c.targets[tgt.Ref] = st
	stop := make(chan struct{})
	defer func() { close(stop); copies.Shutdown(); tgt.Chaperons.Shutdown() }()
	copies.Start(stop)
	copies.WaitForCacheSync(stop)

	deletes := func() int {
		n := 0
		for _, a := range dyn.Actions() {
			if a.GetVerb() == "delete" {
				n++
			}
		}
		return n
	}
	if st.readable() {
		t.Fatal("chaperon cache not synced: readable")
	}
	if err := c.reconcileObject(ctx, kindIngress, "ns", "web"); err != nil {
		t.Fatal(err)
	}
	if deletes() != 0 || len(dyn.Actions()) != 0 {
		t.Fatalf("unreadable target: %v, want nothing done there", dyn.Actions())
	}

	tgt.Chaperons.Start(stop)
	tgt.Chaperons.WaitForCacheSync(stop)
	if !st.readable() {
		t.Fatal("synced: not readable")
	}
	c.targetReadable(tgt)
	if err := c.reconcileObject(ctx, kindIngress, "ns", "web"); err != nil {
		t.Fatal(err)
	}
	if deletes() != 0 {
		t.Fatalf("readable, a delegate behind the ingress: %v, want the copy kept", dyn.Actions())
	}
}
