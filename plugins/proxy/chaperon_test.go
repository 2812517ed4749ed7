package proxy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets"
)

type waitingHandle struct {
	fwk.Handle
	wp *waitingPod
}

func (h waitingHandle) GetWaitingPod(types.UID) fwk.WaitingPod { return h.wp }

type waitingPod struct {
	fwk.WaitingPod
	rejected chan string
}

func (w *waitingPod) Reject(_, message string) bool { w.rejected <- message; return true }
func (w *waitingPod) Allow(string)                  { w.rejected <- "" }

// A chaperon deleted in its target before the verdict retries its pod at
// once (not at candidateTimeout), without holding it against the target;
// the deletion of another chaperon of the same name (an earlier one) or
// of the same pod in another target changes nothing.
func TestChaperonDeletedBeforeItsVerdict(t *testing.T) {
	wp := &waitingPod{rejected: make(chan string, 1)}
	c2 := &targets.Target{Ref: targets.Ref{Namespace: "ns", Name: "c2"}}
	c3 := &targets.Target{Ref: targets.Ref{Namespace: "ns", Name: "c3"}}
	proxy := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "proxy-uid"}}
	r := &reservation{target: c2, proxy: proxy, chaperon: "p-1", chaperonUID: "sent"}
	p := &Plugin{
		handle:   waitingHandle{wp: wp},
		attempts: &attempts{m: map[types.UID]*attempt{}},
		inflight: map[types.UID]*reservation{proxy.UID: r},
		refused:  map[types.UID]map[targets.Ref]refusal{},
	}
	chaperon := func(uid types.UID) *v1alpha1.PodChaperon {
		return &v1alpha1.PodChaperon{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p-1", UID: uid,
			Labels: map[string]string{v1alpha1.LabelParentUID: string(proxy.UID)}}}
	}

	p.chaperonDeleted(c2, chaperon("an-earlier-one"))
	p.chaperonDeleted(c3, chaperon("sent"))
	select {
	case m := <-wp.rejected:
		t.Fatalf("decided by the deletion of another chaperon: %q", m)
	case <-time.After(100 * time.Millisecond):
	}

	p.chaperonDeleted(c2, chaperon("sent"))
	select {
	case m := <-wp.rejected:
		if !strings.Contains(m, "deleted in c2 before the candidate was placed") {
			t.Errorf("rejected with %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting pod was not rejected")
	}
	if len(p.refused[proxy.UID]) != 0 {
		t.Errorf("c2 held against the pod: %v", p.refused[proxy.UID])
	}
	p.chaperonDeleted(c2, chaperon("sent")) // decided already: nothing more
	select {
	case m := <-wp.rejected:
		t.Fatalf("decided twice: %q", m)
	case <-time.After(100 * time.Millisecond):
	}
}

type waitingPods struct {
	fwk.Handle
	mu   sync.Mutex
	pods map[types.UID]*waitingPod
}

func (h *waitingPods) GetWaitingPod(uid types.UID) fwk.WaitingPod {
	h.mu.Lock()
	defer h.mu.Unlock()
	if wp, ok := h.pods[uid]; ok {
		return wp
	}
	return nil
}

// At most maxInFlightPerTarget chaperons are undecided in a target; the
// next pod waits for a verdict to free a place. A target that makes no
// progress for candidateTimeout refuses the pod in flight, and the pods
// waiting behind it go elsewhere.
func TestInFlightPlacesAndTimeout(t *testing.T) {
	c2 := &targets.Target{Ref: targets.Ref{Namespace: "ns", Name: "c2"}}
	h := &waitingPods{pods: map[types.UID]*waitingPod{}}
	p := &Plugin{
		handle:   h,
		args:     Args{MaxInFlightPerTarget: 1, CandidateTimeout: metav1.Duration{Duration: 200 * time.Millisecond}, RefusedTargetTTL: metav1.Duration{Duration: time.Minute}},
		attempts: &attempts{m: map[types.UID]*attempt{}},
		inflight: map[types.UID]*reservation{},
		refused:  map[types.UID]map[targets.Ref]refusal{},
		slots:    map[targets.Ref]chan struct{}{},
		progress: map[targets.Ref]time.Time{},
	}
	reserve := func(name string) *reservation {
		uid := types.UID(name + "-uid")
		r := &reservation{target: c2, proxy: &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: uid}}, chaperon: name + "-1"}
		h.mu.Lock()
		h.pods[uid] = &waitingPod{rejected: make(chan string, 1)}
		h.mu.Unlock()
		p.mu.Lock()
		p.inflight[uid] = r
		p.mu.Unlock()
		return r
	}
	verdict := func(r *reservation) string {
		t.Helper()
		select {
		case m := <-h.pods[r.proxy.UID].rejected:
			return m
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no verdict", r.proxy.Name)
			return ""
		}
	}
	acquired := func(r *reservation) chan error {
		ctx, cancel := context.WithCancel(context.Background())
		p.mu.Lock()
		r.cancel = cancel
		p.mu.Unlock()
		done := make(chan error, 1)
		go func() { done <- p.acquire(ctx, r) }()
		return done
	}

	r1, r2, r3 := reserve("p1"), reserve("p2"), reserve("p3")
	if err := <-acquired(r1); err != nil {
		t.Fatalf("p1: %v", err)
	}
	second := acquired(r2)
	select {
	case err := <-second:
		t.Fatalf("p2 got a place while p1 holds the only one (%v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	p.decide(r1.proxy.UID, true, "")
	if m := verdict(r1); m != "" {
		t.Fatalf("p1 rejected: %q", m)
	}
	if err := <-second; err != nil {
		t.Fatalf("p2, after p1's verdict: %v", err)
	}

	// p2 is sent and its chaperon changes (progress), then nothing: it
	// times out; p3, waiting behind it, is refused there at once.
	third := acquired(r3)
	p.mu.Lock()
	r2.chaperonUID = "c-p2"
	p.progressLocked(r2, "1")
	p.mu.Unlock()
	if m := verdict(r2); !strings.Contains(m, "no answer within 200ms") {
		t.Errorf("p2 rejected with %q, want a timeout", m)
	}
	if m := verdict(r3); !strings.Contains(m, "c2: gave no verdict on an earlier pod") {
		t.Errorf("p3 rejected with %q, want: not waiting behind p2", m)
	}
	// The end of p3's attempt (Unreserve) ends its wait for a place.
	p.mu.Lock()
	delete(p.inflight, r3.proxy.UID)
	p.endLocked(r3)
	p.mu.Unlock()
	if err := <-third; err == nil {
		t.Error("p3 got a place after its attempt ended")
	}
	for _, r := range []*reservation{r2, r3} {
		if _, ok := p.recentlyRefused(r.proxy.UID, c2.Ref); !ok {
			t.Errorf("%s: c2 not avoided after it gave no verdict", r.proxy.Name)
		}
	}
	if n := len(p.slots[c2.Ref]); n != 0 {
		t.Errorf("%d places still held", n)
	}
}

// The verdict timer counts from the target's last progress on any of this
// source's chaperons: a target working through them is not stalled,
// however long one chaperon waits; once nothing moves, it times out.
func TestVerdictTimerCountsTheTargetsProgress(t *testing.T) {
	c2 := &targets.Target{Ref: targets.Ref{Namespace: "ns", Name: "c2"}}
	h := &waitingPods{pods: map[types.UID]*waitingPod{}}
	timeout := 200 * time.Millisecond
	p := &Plugin{
		handle:   h,
		args:     Args{MaxInFlightPerTarget: 2, CandidateTimeout: metav1.Duration{Duration: timeout}, RefusedTargetTTL: metav1.Duration{Duration: time.Minute}},
		attempts: &attempts{m: map[types.UID]*attempt{}},
		inflight: map[types.UID]*reservation{},
		refused:  map[types.UID]map[targets.Ref]refusal{},
		slots:    map[targets.Ref]chan struct{}{},
		progress: map[targets.Ref]time.Time{},
	}
	var rs []*reservation
	for _, name := range []string{"slow", "busy"} {
		uid := types.UID(name + "-uid")
		r := &reservation{target: c2, proxy: &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: uid}}, chaperon: name + "-1", chaperonUID: types.UID(name + "-c")}
		h.pods[uid] = &waitingPod{rejected: make(chan string, 1)}
		p.inflight[uid] = r
		if err := p.acquire(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		p.progressLocked(r, "1")
		p.mu.Unlock()
		rs = append(rs, r)
	}
	slow, busy := rs[0], rs[1]
	for i := 2; i < 10; i++ {
		time.Sleep(timeout / 2)
		p.mu.Lock()
		p.progressLocked(busy, fmt.Sprint(i))
		p.mu.Unlock()
	}
	select {
	case m := <-h.pods[slow.proxy.UID].rejected:
		t.Fatalf("rejected while the target made progress on another chaperon: %q", m)
	default:
	}
	p.decide(busy.proxy.UID, true, "")
	if m := <-h.pods[busy.proxy.UID].rejected; m != "" {
		t.Fatalf("busy: rejected with %q", m)
	}
	select {
	case m := <-h.pods[slow.proxy.UID].rejected:
		if !strings.Contains(m, "no answer within 200ms") {
			t.Errorf("slow: rejected with %q, want a timeout", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow: no timeout once the target stopped making progress")
	}
}
