package feedback

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	mcfake "admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned/fake"
	mcinformers "admiralty.io/multicluster-scheduler/apis/generated/informers/externalversions"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets"
)

// fakeRegistry is a fixed set of live targets.
type fakeRegistry []*targets.Target

func (r fakeRegistry) List() []*targets.Target { return r }

func (r fakeRegistry) ByVirtualNode(name string) *targets.Target {
	for _, t := range r {
		if t.Ref.VirtualNodeName() == name {
			return t
		}
	}
	return nil
}

type harness struct {
	c       *Controller
	clock   *clocktesting.FakeClock
	kube    *kubefake.Clientset
	proxies cache.Indexer
	target  *targets.Target
	events  *record.FakeRecorder

	mu     sync.Mutex
	queued []string
}

// newHarness returns a controller whose only target, c2, has no chaperon
// and a chaperon cache that is not started (StartTarget starts it).
func newHarness(t *testing.T) *harness {
	h := &harness{
		clock:   clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
		kube:    kubefake.NewClientset(),
		proxies: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		events:  record.NewFakeRecorder(100),
	}
	mc := mcfake.NewSimpleClientset()
	h.target = &targets.Target{Ref: targets.Ref{Namespace: "ns", Name: "c2"}, Scope: "ns", MCClient: mc,
		Chaperons: mcinformers.NewSharedInformerFactoryWithOptions(mc, 0, mcinformers.WithNamespace("ns"))}
	// The informer exists before it starts, as the handlers make it.
	h.target.Chaperons.Multicluster().V1alpha1().PodChaperons().Informer()
	h.c = &Controller{
		client:       h.kube,
		recorder:     h.events,
		registry:     fakeRegistry{h.target},
		proxies:      corelisters.NewPodLister(h.proxies),
		missingSince: map[types.UID]time.Time{},
		clock:        h.clock,
		enqueue: func(key string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.queued = append(h.queued, key)
		},
	}
	return h
}

func (h *harness) startTarget(t *testing.T) {
	t.Helper()
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); h.target.Chaperons.Shutdown() })
	h.target.Chaperons.Start(stop)
	for typ, ok := range h.target.Chaperons.WaitForCacheSync(stop) {
		if !ok {
			t.Fatalf("%v did not sync", typ)
		}
	}
}

// boundProxy adds a running proxy bound to the target's virtual node, with
// no controller (a bare pod), to the API and the cache.
func (h *harness) boundProxy(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name),
			Labels: map[string]string{v1alpha1.LabelIsProxy: "true"}},
		Spec:   corev1.PodSpec{NodeName: h.target.Ref.VirtualNodeName()},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if _, err := h.kube.CoreV1().Pods("ns").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.proxies.Add(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func (h *harness) deletes() int {
	n := 0
	for _, a := range h.kube.Actions() {
		if a.GetVerb() == "delete" {
			n++
		}
	}
	return n
}

func (h *harness) missing() int {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return len(h.c.missingSince)
}

// After a restart while a target is down, its chaperon cache is empty and
// not synced: a proxy bound there is not lost (and not deleted, however
// long that lasts); once the cache syncs, the proxy is looked at again, and
// one whose chaperon is really gone is lost after lostGrace.
func TestAProxyIsNotLostWhileItsTargetIsNotReadable(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	p := h.boundProxy(t, "web")
	if h.target.Readable() {
		t.Fatal("a target whose chaperon cache has not synced is readable")
	}
	for range 3 {
		res, err := h.c.reconcile(ctx, "ns/web")
		if err != nil || res.RequeueAfter != 0 {
			t.Fatalf("unreadable target: reconcile = %+v, %v; want nothing to do", res, err)
		}
		if h.missing() != 0 || h.deletes() != 0 {
			t.Fatalf("unreadable target: %d missing, %d deletes; want none", h.missing(), h.deletes())
		}
		h.clock.Step(10 * lostGrace)
	}

	h.startTarget(t)
	if !h.target.Readable() {
		t.Fatal("synced and never found unreachable: not readable")
	}
	h.c.targetReadable(h.target)
	h.mu.Lock()
	queued := append([]string(nil), h.queued...)
	h.mu.Unlock()
	if len(queued) != 1 || queued[0] != "ns/web" {
		t.Fatalf("once readable, queued %v, want the proxy bound to the target", queued)
	}

	res, err := h.c.reconcile(ctx, "ns/web")
	if err != nil || res.RequeueAfter != lostGrace || h.deletes() != 0 {
		t.Fatalf("readable, no chaperon: reconcile = %+v, %v, %d deletes; want a wait of lostGrace", res, err, h.deletes())
	}
	h.clock.Step(lostGrace)
	if _, err := h.c.reconcile(ctx, "ns/web"); err != nil {
		t.Fatal(err)
	}
	if h.deletes() != 1 {
		t.Fatalf("lostGrace later: %d deletes, want the proxy's", h.deletes())
	}
	select {
	case e := <-h.events.Events:
		if want := "Warning " + ReasonDelegateLost; len(e) < len(want) || e[:len(want)] != want {
			t.Errorf("event %q, want %s", e, ReasonDelegateLost)
		}
	default:
		t.Error("no event on the lost proxy")
	}
	h.c.proxyDeleted(p)
	if h.missing() != 0 {
		t.Errorf("deleted proxy still in missingSince")
	}
}

// Nothing grows with pods that come and go: 10,000 proxies found without a
// chaperon, whose chaperons were deleted (self delegates noted), then
// deleted, leave every per-pod map at its size before, once the memories
// of deletions (deletedMemory) have passed.
func TestPerPodMapsGoBackToTheirSize(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.startTarget(t)
	sizes := func() [4]int {
		h.c.mu.Lock()
		defer h.c.mu.Unlock()
		return [4]int{len(h.c.missingSince), len(h.c.deleted.at), len(h.c.deletedChaperons.at), len(h.c.selfDelegates.at)}
	}
	before := sizes()
	const n = 10000
	for i := range n {
		name := fmt.Sprintf("p%d", i)
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name),
				Labels: map[string]string{v1alpha1.LabelIsProxy: "true"}},
			Spec:   corev1.PodSpec{NodeName: h.target.Ref.VirtualNodeName()},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		}
		if err := h.proxies.Add(p); err != nil {
			t.Fatal(err)
		}
		if res, err := h.c.reconcile(ctx, "ns/"+name); err != nil || res.RequeueAfter != lostGrace {
			t.Fatalf("%s: reconcile = %+v, %v; want a wait of lostGrace", name, res, err)
		}
		ch := &v1alpha1.PodChaperon{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("ch-" + name),
			Labels: map[string]string{v1alpha1.LabelParentUID: string(p.UID)}}}
		if err := h.c.deleteChaperon(ctx, h.target, ch); err != nil {
			t.Fatal(err)
		}
		h.c.noteSelfDelegate(ch, true)
		if err := h.proxies.Delete(p); err != nil {
			t.Fatal(err)
		}
		h.c.proxyDeleted(p)
		if _, err := h.c.reconcile(ctx, "ns/"+name); err != nil {
			t.Fatal(err)
		}
	}
	mid := sizes()
	if mid[0] != before[0] {
		t.Errorf("missingSince: %d after the proxies were deleted, want %d", mid[0], before[0])
	}
	if mid[1] != before[1]+n {
		t.Errorf("deleted proxies remembered: %d, want %d (they are, for deletedMemory)", mid[1], before[1]+n)
	}
	h.clock.Step(deletedMemory + 2*time.Second)
	if after := sizes(); after != before {
		t.Errorf("sizes (missingSince, deleted, deletedChaperons, selfDelegates) %v after deletedMemory, want %v as before", after, before)
	}
}
