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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"
	fwk "k8s.io/kube-scheduler/framework"
	clocktesting "k8s.io/utils/clock/testing"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned/fake"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets"
)

// waitingPod is a proxy waiting in Permit: its verdict is "" (allowed) or
// the rejection's message.
type waitingPod struct {
	fwk.WaitingPod
	verdicts chan string
}

func (w *waitingPod) Reject(_, message string) bool { w.verdicts <- message; return true }
func (w *waitingPod) Allow(string)                  { w.verdicts <- "" }

// fakeIndex is a target's informer, as the dispatcher reads it.
type fakeIndex struct {
	mu     sync.Mutex
	byUID  map[types.UID][]*v1alpha1.PodChaperon
	synced chan struct{}
}

func newFakeIndex() *fakeIndex {
	i := &fakeIndex{byUID: map[types.UID][]*v1alpha1.PodChaperon{}, synced: make(chan struct{})}
	close(i.synced)
	return i
}

func (i *fakeIndex) ByProxy(uid types.UID) []*v1alpha1.PodChaperon {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]*v1alpha1.PodChaperon{}, i.byUID[uid]...)
}

func (i *fakeIndex) Synced() <-chan struct{} { return i.synced }

// set shows c (replacing the one of the same UID), as an informer's store
// does before its handlers run.
func (i *fakeIndex) set(c *v1alpha1.PodChaperon) {
	i.mu.Lock()
	defer i.mu.Unlock()
	uid := types.UID(c.Labels[v1alpha1.LabelParentUID])
	list := i.byUID[uid]
	for j, o := range list {
		if o.UID == c.UID {
			list[j] = c
			return
		}
	}
	i.byUID[uid] = append(list, c)
}

func (i *fakeIndex) remove(c *v1alpha1.PodChaperon) {
	i.mu.Lock()
	defer i.mu.Unlock()
	uid := types.UID(c.Labels[v1alpha1.LabelParentUID])
	var keep []*v1alpha1.PodChaperon
	for _, o := range i.byUID[uid] {
		if o.UID != c.UID {
			keep = append(keep, o)
		}
	}
	if len(keep) == 0 {
		delete(i.byUID, uid)
		return
	}
	i.byUID[uid] = keep
}

// testTarget is a target with a fake client and informer; its client
// gives each created chaperon a UID and reports writes on writes.
type testTarget struct {
	*targets.Target
	index  *fakeIndex
	client *fake.Clientset
	writes chan k8stesting.Action
	// hold, if set, delays creates until it is closed.
	hold chan struct{}
}

func newTestTarget(name string) *testTarget {
	client := fake.NewSimpleClientset()
	tt := &testTarget{
		Target: &targets.Target{Ref: targets.Ref{Namespace: "ns", Name: name}, MCClient: client},
		index:  newFakeIndex(),
		client: client,
		writes: make(chan k8stesting.Action, 100),
	}
	n := 0
	client.PrependReactor("create", "podchaperons", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if tt.hold != nil {
			<-tt.hold
		}
		n++
		a.(k8stesting.CreateAction).GetObject().(*v1alpha1.PodChaperon).UID = types.UID(fmt.Sprintf("%s-%d", name, n))
		tt.writes <- a
		return false, nil, nil
	})
	client.PrependReactor("delete", "podchaperons", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tt.writes <- a
		return false, nil, nil
	})
	return tt
}

// write waits for the target's next write.
func (tt *testTarget) write(t *testing.T) k8stesting.Action {
	t.Helper()
	select {
	case a := <-tt.writes:
		return a
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no write", tt.Ref.Name)
		return nil
	}
}

func (tt *testTarget) noWrite(t *testing.T) {
	t.Helper()
	select {
	case a := <-tt.writes:
		t.Fatalf("%s: unexpected %s %s", tt.Ref.Name, a.GetVerb(), a.GetResource().Resource)
	default:
	}
}

// dispatchTest is a dispatcher on a fake clock, with waiting pods.
type dispatchTest struct {
	*dispatcher
	clock     *clocktesting.FakeClock
	mu        sync.Mutex
	pods      map[types.UID]*waitingPod
	activated chan types.UID
	steps     chan step
	// early: steps read while awaiting others.
	early []step
}

type step struct {
	name  string
	proxy types.UID
}

func newDispatchTest(t *testing.T, args Args) *dispatchTest {
	if args.CandidateTimeout.Duration == 0 {
		args.CandidateTimeout.Duration = 30 * time.Second
	}
	if args.RefusedTargetTTL.Duration == 0 {
		args.RefusedTargetTTL.Duration = time.Minute
	}
	if args.MaxInFlightPerTarget == 0 {
		args.MaxInFlightPerTarget = 100
	}
	c := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	dt := &dispatchTest{clock: c, pods: map[types.UID]*waitingPod{}, activated: make(chan types.UID, 100), steps: make(chan step, 1000)}
	dt.dispatcher = newDispatcher(c, args, newAttempts(nil, c))
	dt.waitingPod = func(uid types.UID) fwk.WaitingPod {
		dt.mu.Lock()
		defer dt.mu.Unlock()
		if wp, ok := dt.pods[uid]; ok {
			return wp
		}
		return nil
	}
	dt.dispatcher.activate = func(pod *v1.Pod) { dt.activated <- pod.UID }
	dt.trace = func(name string, uid types.UID) { dt.steps <- step{name, uid} }
	return dt
}

func (dt *dispatchTest) add(tt *testTarget) { dt.targetAdded(tt.Target, tt.index) }

// step moves the clock and waits for the timers it fired.
func (dt *dispatchTest) step(d time.Duration) {
	dt.clock.Step(d)
	dt.timers.Wait()
}

func testProxy(name string) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name + "-uid")}}
}

// start reserves the proxy in tt and has it wait in Permit, as the
// framework does; permit sends its chaperon.
func (dt *dispatchTest) start(proxy *v1.Pod, tt *testTarget) *reservation {
	dt.mu.Lock()
	dt.pods[proxy.UID] = &waitingPod{verdicts: make(chan string, 10)}
	dt.mu.Unlock()
	dt.attempts.reserved(proxy, tt.Ref.String(), dt.clock.Now(), false)
	return dt.reserve(proxy, tt.Target, nil, proxy.Name+"-c", false)
}

func (dt *dispatchTest) permitSend(r *reservation) {
	dt.permit(context.Background(), r, chaperonFor(r.proxy, ""))
}

func chaperonFor(proxy *v1.Pod, uid types.UID) *v1alpha1.PodChaperon {
	return &v1alpha1.PodChaperon{ObjectMeta: metav1.ObjectMeta{Namespace: proxy.Namespace, Name: proxy.Name + "-c", UID: uid,
		Labels: map[string]string{v1alpha1.LabelParentUID: string(proxy.UID)}}}
}

// verdict waits for the proxy's verdict.
func (dt *dispatchTest) verdict(t *testing.T, proxy *v1.Pod) string {
	t.Helper()
	dt.mu.Lock()
	wp := dt.pods[proxy.UID]
	dt.mu.Unlock()
	select {
	case m := <-wp.verdicts:
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no verdict", proxy.Name)
		return ""
	}
}

func (dt *dispatchTest) noVerdict(t *testing.T, proxy *v1.Pod) {
	t.Helper()
	dt.mu.Lock()
	wp := dt.pods[proxy.UID]
	dt.mu.Unlock()
	select {
	case m := <-wp.verdicts:
		t.Fatalf("%s: unexpected verdict %q", proxy.Name, m)
	default:
	}
}

// await waits for the proxy's send to reach the step.
func (dt *dispatchTest) await(t *testing.T, name string, proxy *v1.Pod) {
	t.Helper()
	want := step{name, proxy.UID}
	for i, s := range dt.early {
		if s == want {
			dt.early = append(dt.early[:i], dt.early[i+1:]...)
			return
		}
	}
	for {
		select {
		case s := <-dt.steps:
			if s == want {
				return
			}
			dt.early = append(dt.early, s)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: never %s", proxy.Name, name)
		}
	}
}

// update shows c in tt's informer, store then handlers.
func (dt *dispatchTest) update(tt *testTarget, c *v1alpha1.PodChaperon) {
	tt.index.set(c)
	dt.chaperonChanged(tt.Target, c)
}

func (dt *dispatchTest) gone(tt *testTarget, c *v1alpha1.PodChaperon) {
	tt.index.remove(c)
	dt.chaperonDeleted(tt.Target, c)
}

// created waits for the chaperon's creation and shows it in the index.
func created(t *testing.T, tt *testTarget) *v1alpha1.PodChaperon {
	t.Helper()
	a := tt.write(t)
	if a.GetVerb() != "create" {
		t.Fatalf("%s: %s, want create", tt.Ref.Name, a.GetVerb())
	}
	c := a.(k8stesting.CreateAction).GetObject().(*v1alpha1.PodChaperon).DeepCopy()
	c.ResourceVersion = "1"
	return c
}

func deletedUID(t *testing.T, tt *testTarget) types.UID {
	t.Helper()
	a := tt.write(t)
	del, ok := a.(k8stesting.DeleteAction)
	if !ok {
		t.Fatalf("%s: %s, want delete", tt.Ref.Name, a.GetVerb())
	}
	o := del.GetDeleteOptions()
	if o.Preconditions == nil || o.Preconditions.UID == nil {
		t.Fatalf("%s: delete of %s without a UID precondition", tt.Ref.Name, del.GetName())
	}
	if o.PropagationPolicy == nil || *o.PropagationPolicy != metav1.DeletePropagationForeground {
		t.Errorf("%s: delete of %s not foreground", tt.Ref.Name, del.GetName())
	}
	return *o.Preconditions.UID
}

func (dt *dispatchTest) sentUID(r *reservation) types.UID {
	dt.dispatcher.mu.Lock()
	defer dt.dispatcher.mu.Unlock()
	return r.chaperonUID
}

func withStatus(c *v1alpha1.PodChaperon, rv string, f func(*v1alpha1.PodChaperon)) *v1alpha1.PodChaperon {
	c = c.DeepCopy()
	c.ResourceVersion = rv
	f(c)
	return c
}

func placed(c *v1alpha1.PodChaperon) { c.Status.NodeName = "node-1" }

func unschedulable(c *v1alpha1.PodChaperon) {
	c.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionFalse, Reason: v1.PodReasonUnschedulable, Message: "0/3 nodes are available"}}
}

func deleting(c *v1alpha1.PodChaperon) {
	now := metav1.Now()
	c.DeletionTimestamp = &now
}

// Only the proxy's very chaperon decides it: not an earlier one of the
// same name (a predecessor), not one being deleted, nothing before the
// chaperon is sent; a deleted chaperon retries its pod at once without
// holding it against the target, and the deletion of another chaperon of
// the same name, or of the pod in another target, changes nothing.
func TestVerdictsAreUIDExact(t *testing.T) {
	dt := newDispatchTest(t, Args{})
	c2, c3 := newTestTarget("c2"), newTestTarget("c3")
	dt.add(c2)
	dt.add(c3)
	proxy := testProxy("p")
	r := dt.start(proxy, c2)

	// Not sent yet: an earlier chaperon placed, of the same name, is not
	// this attempt's verdict.
	dt.chaperonChanged(c2.Target, withStatus(chaperonFor(proxy, "earlier"), "5", placed))
	dt.noVerdict(t, proxy)

	dt.permitSend(r)
	sent := created(t, c2)
	dt.update(c2, sent)
	dt.await(t, "sent", proxy)
	if got := dt.sentUID(r); got != sent.UID {
		t.Fatalf("sent %q, want %q", got, sent.UID)
	}
	dt.chaperonChanged(c2.Target, withStatus(chaperonFor(proxy, "earlier"), "6", placed))
	dt.chaperonChanged(c3.Target, withStatus(sent, "7", placed))
	dt.chaperonDeleted(c2.Target, chaperonFor(proxy, "earlier"))
	dt.chaperonDeleted(c3.Target, sent)
	dt.noVerdict(t, proxy)

	// Being deleted: no verdict from it; the pod is retried.
	dt.update(c2, withStatus(sent, "8", func(c *v1alpha1.PodChaperon) { placed(c); deleting(c) }))
	if m := dt.verdict(t, proxy); !strings.Contains(m, "is being deleted in c2") {
		t.Errorf("rejected with %q, want a retry", m)
	}
	if _, ok := dt.recentlyRefused(proxy.UID, c2.Ref); ok {
		t.Error("c2 held against the pod")
	}
	dt.gone(c2, sent) // decided already: nothing more
	dt.noVerdict(t, proxy)
	dt.unreserve(context.Background(), proxy.UID, "")
	if uid := deletedUID(t, c2); uid != sent.UID {
		t.Errorf("deleted %q, want %q", uid, sent.UID)
	}

	// The next attempt's own chaperon, deleted: retried, not refused.
	r = dt.start(proxy, c2)
	dt.permitSend(r)
	next := created(t, c2)
	dt.update(c2, next)
	dt.await(t, "sent", proxy)
	if dt.sentUID(r) != next.UID {
		t.Fatal("the next chaperon is not the attempt's")
	}
	dt.gone(c2, next)
	if m := dt.verdict(t, proxy); !strings.Contains(m, "was deleted in c2 before the candidate was placed") {
		t.Errorf("rejected with %q", m)
	}
	if _, ok := dt.recentlyRefused(proxy.UID, c2.Ref); ok {
		t.Error("c2 held against the pod")
	}
}

// A retry on the same target waits for the earlier chaperon to go, and
// the earlier one's verdict, meanwhile, does not bind the proxy: only the
// new chaperon's does.
func TestRetryOnTheSameTargetBindsOnlyOnItsOwnChaperon(t *testing.T) {
	dt := newDispatchTest(t, Args{})
	c2 := newTestTarget("c2")
	dt.add(c2)
	proxy := testProxy("p")

	dt.permitSend(dt.start(proxy, c2))
	first := created(t, c2)
	dt.update(c2, first)
	dt.await(t, "sent", proxy)
	dt.update(c2, withStatus(first, "2", unschedulable))
	if m := dt.verdict(t, proxy); !strings.Contains(m, "c2 refused the candidate") {
		t.Fatalf("rejected with %q, want a refusal", m)
	}
	dt.unreserve(context.Background(), proxy.UID, "")
	if uid := deletedUID(t, c2); uid != first.UID {
		t.Fatalf("deleted %q, want %q", uid, first.UID)
	}
	// Foreground: the chaperon stays while its delegate goes.
	dt.update(c2, withStatus(first, "3", deleting))

	r := dt.start(proxy, c2)
	dt.permitSend(r)
	dt.await(t, "waiting", proxy)
	dt.update(c2, withStatus(first, "4", func(c *v1alpha1.PodChaperon) { deleting(c); placed(c) }))
	dt.await(t, "waiting", proxy)
	dt.noVerdict(t, proxy)
	c2.noWrite(t)

	dt.gone(c2, first)
	second := created(t, c2)
	if second.UID == first.UID {
		t.Fatal("same UID")
	}
	dt.update(c2, second)
	dt.await(t, "sent", proxy)
	dt.noVerdict(t, proxy)
	dt.update(c2, withStatus(second, "2", placed))
	if m := dt.verdict(t, proxy); m != "" {
		t.Fatalf("rejected with %q", m)
	}
	if dt.sentUID(r) != second.UID {
		t.Error("bound on another chaperon")
	}
}

// Unreserve deletes only what was sent: nothing for a proxy that waited
// for a place, the created chaperon once a create in flight returns, the
// sent chaperon by its UID.
func TestUnreserveDeletesOnlyWhatWasSent(t *testing.T) {
	dt := newDispatchTest(t, Args{MaxInFlightPerTarget: 1})
	c2 := newTestTarget("c2")
	dt.add(c2)

	// p1 holds the only place; p2 waits for it, and ends.
	p1, p2 := testProxy("p1"), testProxy("p2")
	dt.permitSend(dt.start(p1, c2))
	sent := created(t, c2)
	dt.update(c2, sent)
	dt.await(t, "sent", p1)
	dt.permitSend(dt.start(p2, c2))
	dt.await(t, "queued", p2)
	dt.unreserve(context.Background(), p2.UID, "")
	c2.noWrite(t)

	// p1's sent chaperon is deleted by UID.
	dt.unreserve(context.Background(), p1.UID, "")
	if uid := deletedUID(t, c2); uid != sent.UID {
		t.Errorf("deleted %q, want %q", uid, sent.UID)
	}
	dt.gone(c2, sent)

	// p3's create is out when its attempt ends: the delete follows the
	// create, never overtakes it.
	p3 := testProxy("p3")
	c2.hold = make(chan struct{})
	dt.permitSend(dt.start(p3, c2))
	dt.await(t, "creating", p3)
	dt.unreserve(context.Background(), p3.UID, "")
	c2.noWrite(t)
	close(c2.hold)
	made := created(t, c2)
	if uid := deletedUID(t, c2); uid != made.UID {
		t.Errorf("deleted %q, want the created %q", uid, made.UID)
	}
	if n := dt.sizes()["perTarget"]; n != 0 {
		t.Errorf("%d targets with places held", n)
	}
}

// One chaperon per proxy from what the informers show: an earlier
// chaperon in another target (a failed delete, a restart) is deleted, and
// the new one waits for it to go; the proxy's own chaperon already in the
// chosen target is taken over, not created again, and decides the proxy.
func TestEarlierChaperonsFromInformers(t *testing.T) {
	dt := newDispatchTest(t, Args{})
	c2, c3 := newTestTarget("c2"), newTestTarget("c3")
	dt.add(c2)
	dt.add(c3)
	proxy := testProxy("p")
	left := chaperonFor(proxy, "left-in-c3")
	c3.index.set(left)

	dt.permitSend(dt.start(proxy, c2))
	if uid := deletedUID(t, c3); uid != left.UID {
		t.Fatalf("deleted %q in c3, want %q", uid, left.UID)
	}
	dt.await(t, "waiting", proxy)
	c2.noWrite(t)
	dt.gone(c3, left)
	sent := created(t, c2)
	dt.update(c2, sent)
	dt.await(t, "sent", proxy)
	dt.unreserve(context.Background(), proxy.UID, "")
	deletedUID(t, c2)
	dt.gone(c2, sent)

	// After a restart: the proxy's chaperon in c2, placed already.
	own := withStatus(chaperonFor(proxy, "before-restart"), "4", placed)
	c2.index.set(own)
	r := dt.start(proxy, c2)
	dt.permitSend(r)
	if m := dt.verdict(t, proxy); m != "" {
		t.Fatalf("rejected with %q", m)
	}
	if dt.sentUID(r) != own.UID {
		t.Error("the chaperon already there was not taken over")
	}
	c2.noWrite(t)
}

// A target whose informer has not listed yet is waited for (its
// chaperons are unknown), unless it stayed so for candidateTimeout since
// it was added (unreachable).
func TestUnsyncedTargets(t *testing.T) {
	dt := newDispatchTest(t, Args{})
	c2, c3 := newTestTarget("c2"), newTestTarget("c3")
	c3.index.synced = make(chan struct{})
	dt.add(c2)
	dt.add(c3)
	proxy := testProxy("p")
	dt.permitSend(dt.start(proxy, c2))
	dt.await(t, "waiting", proxy)
	c2.noWrite(t)
	close(c3.index.synced)
	sent := created(t, c2)
	dt.update(c2, sent)
	dt.await(t, "sent", proxy)
	dt.unreserve(context.Background(), proxy.UID, "")
	deletedUID(t, c2)
	dt.gone(c2, sent)

	c4 := newTestTarget("c4")
	c4.index.synced = make(chan struct{})
	dt.add(c4)
	dt.permitSend(dt.start(proxy, c2))
	dt.await(t, "waiting", proxy)
	dt.step(30 * time.Second)
	if m := dt.verdict(t, proxy); !strings.Contains(m, "earlier chaperon") {
		t.Fatalf("rejected with %q", m)
	}
	dt.unreserve(context.Background(), proxy.UID, "")
	dt.permitSend(dt.start(proxy, c2))
	created(t, c2)
}

// At most maxInFlightPerTarget chaperons are undecided in a target; the
// next pods wait, in order, for a verdict to free a place. A target that
// makes no progress for candidateTimeout refuses the pod in flight, and
// the pods waiting behind it go elsewhere.
func TestInFlightPlacesAndTimeout(t *testing.T) {
	dt := newDispatchTest(t, Args{MaxInFlightPerTarget: 1})
	c2 := newTestTarget("c2")
	dt.add(c2)
	p1, p2, p3 := testProxy("p1"), testProxy("p2"), testProxy("p3")
	dt.permitSend(dt.start(p1, c2))
	s1 := created(t, c2)
	dt.update(c2, s1)
	dt.await(t, "sent", p1)
	dt.permitSend(dt.start(p2, c2))
	dt.await(t, "queued", p2)
	dt.permitSend(dt.start(p3, c2))
	dt.await(t, "queued", p3)
	c2.noWrite(t)
	dt.update(c2, withStatus(s1, "2", placed))
	if m := dt.verdict(t, p1); m != "" {
		t.Fatalf("p1 rejected: %q", m)
	}
	// p1's place goes to p2 (first in line), whose chaperon then makes
	// progress, then nothing: it times out; p3, waiting behind it, is
	// refused there at once.
	s2 := created(t, c2)
	if s2.Name != "p2-c" {
		t.Fatalf("sent %s, want p2's", s2.Name)
	}
	dt.update(c2, s2)
	dt.await(t, "sent", p2)
	dt.step(29 * time.Second)
	dt.noVerdict(t, p2)
	dt.step(time.Second)
	if m := dt.verdict(t, p2); !strings.Contains(m, "no answer within 30s") {
		t.Errorf("p2 rejected with %q, want a timeout", m)
	}
	if m := dt.verdict(t, p3); !strings.Contains(m, "c2: gave no verdict on an earlier pod") {
		t.Errorf("p3 rejected with %q, want: not waiting behind p2", m)
	}
	for _, p := range []*v1.Pod{p2, p3} {
		if _, ok := dt.recentlyRefused(p.UID, c2.Ref); !ok {
			t.Errorf("%s: c2 not avoided after it gave no verdict", p.Name)
		}
		dt.unreserve(context.Background(), p.UID, "")
	}
	if uid := deletedUID(t, c2); uid != s2.UID {
		t.Errorf("deleted %q, want p2's %q", uid, s2.UID)
	}
	c2.noWrite(t)
	dt.bound(p1.UID)
	dt.step(3 * time.Second)
	if n := dt.sizes(); n["perTarget"] != 0 || n["inflight"] != 0 {
		t.Errorf("left: %v", n)
	}
}

// The verdict timer counts from the target's last progress on any of this
// source's chaperons: a target working through them is not stalled,
// however long one chaperon waits; once nothing moves, it times out.
func TestVerdictTimerCountsTheTargetsProgress(t *testing.T) {
	timeout := 30 * time.Second
	dt := newDispatchTest(t, Args{CandidateTimeout: metav1.Duration{Duration: timeout}})
	c2 := newTestTarget("c2")
	dt.add(c2)
	slow, busy := testProxy("slow"), testProxy("busy")
	var sent []*v1alpha1.PodChaperon
	for _, p := range []*v1.Pod{slow, busy} {
		dt.permitSend(dt.start(p, c2))
		c := created(t, c2)
		dt.update(c2, c)
		dt.await(t, "sent", p)
		sent = append(sent, c)
	}
	for i := 2; i < 10; i++ {
		dt.step(timeout / 2)
		dt.update(c2, withStatus(sent[1], fmt.Sprint(i), func(*v1alpha1.PodChaperon) {}))
	}
	dt.noVerdict(t, slow)
	dt.update(c2, withStatus(sent[1], "10", placed))
	if m := dt.verdict(t, busy); m != "" {
		t.Fatalf("busy: rejected with %q", m)
	}
	// The last progress was busy's verdict.
	dt.step(timeout - time.Second)
	dt.noVerdict(t, slow)
	dt.step(time.Second)
	if m := dt.verdict(t, slow); !strings.Contains(m, "no answer within 30s") {
		t.Errorf("slow: rejected with %q, want a timeout", m)
	}
}

// A target that refuses a pod is avoided by it for refusedTargetTTL,
// doubled with each refusal there up to 16 times; the pod is activated
// when a refusal ends, not before.
func TestRefusalsBackOff(t *testing.T) {
	ttl := time.Minute
	dt := newDispatchTest(t, Args{RefusedTargetTTL: metav1.Duration{Duration: ttl}})
	c2 := newTestTarget("c2")
	dt.add(c2)
	proxy := testProxy("p")
	for i, want := range []time.Duration{1, 2, 4, 8, 16, 16} {
		dt.permitSend(dt.start(proxy, c2))
		c := created(t, c2)
		dt.update(c2, c)
		dt.await(t, "sent", proxy)
		dt.update(c2, withStatus(c, "2", unschedulable))
		dt.verdict(t, proxy)
		dt.unreserve(context.Background(), proxy.UID, "")
		deletedUID(t, c2)
		dt.gone(c2, c)

		dt.step(want*ttl - time.Second)
		if _, ok := dt.recentlyRefused(proxy.UID, c2.Ref); !ok {
			t.Fatalf("refusal %d: c2 no longer avoided before %v", i+1, want*ttl)
		}
		select {
		case <-dt.activated:
			t.Fatalf("refusal %d: activated before %v", i+1, want*ttl)
		default:
		}
		dt.step(time.Second)
		if _, ok := dt.recentlyRefused(proxy.UID, c2.Ref); ok {
			t.Fatalf("refusal %d: c2 still avoided after %v", i+1, want*ttl)
		}
		select {
		case uid := <-dt.activated:
			if uid != proxy.UID {
				t.Fatalf("activated %s", uid)
			}
		default:
			t.Fatalf("refusal %d: not activated when it ended", i+1)
		}
	}
	dt.podGone(proxy.UID)
	if n := dt.sizes()["refused"]; n != 0 {
		t.Errorf("refusals of a deleted pod kept: %d", n)
	}
}

// Nothing grows with pods and targets that come and go: 10,000 proxies
// over 50 Targets, each bound, refused, timed out or ended before it was
// sent, then deleted, with the Targets, leave every map as it was, and no
// series of the gone targets.
func TestNothingGrowsWithPodsAndTargetsThatComeAndGo(t *testing.T) {
	dt := newDispatchTest(t, Args{MaxInFlightPerTarget: 1000})
	sentSteps := make(chan types.UID, 1000)
	dt.trace = func(name string, uid types.UID) {
		if name == "sent" {
			sentSteps <- uid
		}
	}
	before := dt.sizes()
	var tts []*testTarget
	for i := range 50 {
		tt := newTestTarget(fmt.Sprintf("t%d", i))
		tt.writes = make(chan k8stesting.Action, 1000)
		dt.add(tt)
		tts = append(tts, tt)
	}
	const pods, batch = 10000, 500
	for first := 0; first < pods; first += batch {
		var ps []*v1.Pod
		for i := first; i < first+batch; i++ {
			p := testProxy(fmt.Sprintf("p%d", i))
			r := dt.start(p, tts[i%len(tts)])
			if i%4 != 3 {
				dt.permitSend(r)
			}
			ps = append(ps, p)
		}
		// Each created chaperon gets the status of its pod's kind.
		for i := first; i < first+batch; i++ {
			if i%4 == 3 {
				continue
			}
			tt := tts[i%len(tts)]
			c := created(t, tt)
			var n int
			fmt.Sscanf(c.Name, "p%d-c", &n)
			switch n % 4 {
			case 0:
				dt.update(tt, withStatus(c, "2", placed))
			case 1:
				dt.update(tt, withStatus(c, "2", unschedulable))
			default:
				dt.update(tt, c)
			}
		}
		for range batch * 3 / 4 {
			select {
			case <-sentSteps:
			case <-time.After(10 * time.Second):
				t.Fatal("chaperons not sent")
			}
		}
		dt.step(30 * time.Second) // the undecided time out
		for j, p := range ps {
			i := first + j
			tt := tts[i%len(tts)]
			switch i % 4 {
			case 0:
				if m := dt.verdict(t, p); m != "" {
					t.Fatalf("%s: %q", p.Name, m)
				}
				dt.attempts.bound(p.UID)
				dt.bound(p.UID)
			case 1, 2:
				dt.verdict(t, p)
				dt.attempts.unreserved(p.UID, "")
				dt.unreserve(context.Background(), p.UID, "")
				deletedUID(t, tt)
			case 3:
				dt.attempts.unreserved(p.UID, "")
				dt.unreserve(context.Background(), p.UID, "")
			}
			for _, c := range tt.index.ByProxy(p.UID) {
				dt.gone(tt, c)
			}
		}
		dt.step(3 * time.Second)
		for _, p := range ps {
			dt.podGone(p.UID)
			dt.mu.Lock()
			delete(dt.pods, p.UID)
			dt.mu.Unlock()
		}
	}
	for _, tt := range tts {
		dt.targetRemoved(tt.Target)
	}
	dt.step(forgetTargetAfter)
	after := dt.sizes()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s: %d, was %d", k, after[k], v)
		}
	}
	if n := len(dt.attempts.m); n != 0 {
		t.Errorf("%d attempts kept", n)
	}
	for _, tt := range tts {
		for _, g := range []interface{ DeleteLabelValues(...string) bool }{inFlight, queued} {
			if g.DeleteLabelValues(tt.Ref.String()) {
				t.Errorf("%s: a gauge kept its series", tt.Ref)
			}
		}
		for _, result := range []string{ResultScheduled, ResultRefused, ResultTimeout, ResultError} {
			if schedulingAttempts.Delete(map[string]string{"result": result, "target": tt.Ref.String()}) {
				t.Errorf("%s: attempts{result=%s} kept its series", tt.Ref, result)
			}
		}
	}
}

// A target gone (its informer stopped) before its informer showed the
// deletion of a proxy's chaperon there holds nothing up: the proxy's next
// chaperon goes at once.
func TestGoneTargetsAreNotWaitedFor(t *testing.T) {
	dt := newDispatchTest(t, Args{})
	c2, c3 := newTestTarget("c2"), newTestTarget("c3")
	dt.add(c2)
	dt.add(c3)
	proxy := testProxy("p")
	dt.permitSend(dt.start(proxy, c3))
	sent := created(t, c3)
	dt.update(c3, sent)
	dt.await(t, "sent", proxy)
	dt.unreserve(context.Background(), proxy.UID, "")
	deletedUID(t, c3)
	dt.targetRemoved(c3.Target)

	dt.permitSend(dt.start(proxy, c2))
	created(t, c2)
	// A wait is traced before the create.
	for {
		select {
		case s := <-dt.steps:
			if s.name == "waiting" {
				t.Fatal("waited for the chaperon in the gone target")
			}
			continue
		default:
		}
		break
	}
}

// The plugin forgets a deleted proxy it kept to requeue.
func TestPluginForgetsDeletedProxies(t *testing.T) {
	p := newPlugin(nil, Args{CandidateTimeout: metav1.Duration{Duration: time.Second}, RefusedTargetTTL: metav1.Duration{Duration: time.Minute}, MaxInFlightPerTarget: 1},
		clocktesting.NewFakeClock(time.Now()))
	proxy := testProxy("p")
	p.notePending(proxy)
	p.podGone(proxy.UID)
	if len(p.pending) != 0 {
		t.Errorf("%d pending proxies kept", len(p.pending))
	}
}
