package proxy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/utils/clock"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/plugins/simulator"
	"admiralty.io/multicluster-scheduler/targets"
)

// dispatcher is the state machine between Reserve and the end of a proxy's
// attempt: it sends the chosen proxy's chaperon to its target (send.go),
// bounds the chaperons in flight per target, times out targets that make
// no progress, and hands each target's verdict to the proxy waiting in
// Permit. Its time is clock's, so that its tests step a fake clock.
//
// Everything it keeps is per proxy that is being scheduled (forgotten when
// the attempt ends, the proxy binds or is deleted) or per live target
// (forgotten once the target is gone and idle).
type dispatcher struct {
	clock            clock.WithDelayedExecution
	candidateTimeout time.Duration
	refusedTTL       time.Duration
	maxInFlight      int
	attempts         *attempts
	// waitingPod is the framework's proxy waiting in Permit, or nil.
	waitingPod func(types.UID) fwk.WaitingPod
	// activate moves the proxy back to the scheduler's active queue if it
	// is still unbound: once a target that refused it may be tried again.
	activate func(*v1.Pod)
	// onDecided runs after each verdict: the plugin requeues the proxies
	// that the booking kept aside.
	onDecided func()

	// timers counts the timer callbacks running (tests wait for them).
	timers sync.WaitGroup
	// trace, if set, is told of the steps of sends (tests): "waiting" for
	// the proxy's earlier chaperons, "queued" for a place, "creating",
	// "sent".
	trace func(step string, proxy types.UID)

	mu       sync.Mutex
	inflight map[types.UID]*reservation
	refused  map[types.UID]*refusals
	// perTarget: the places, queue and progress of each target with
	// chaperons in flight or proxies waiting for a place.
	perTarget map[targets.Ref]*targetState
	// views: the live targets and what their informers show of this
	// source's chaperons.
	views map[targets.Ref]*targetView
	// blind: per proxy, the chaperons being created or created and not yet
	// seen by their target's informer (send.go).
	blind map[types.UID]*blindSpot
	// changed wakes the proxy's send waiting for its previous chaperons to
	// go.
	changed map[types.UID]*notifier
}

func newDispatcher(c clock.WithDelayedExecution, args Args, a *attempts) *dispatcher {
	return &dispatcher{
		clock:            c,
		candidateTimeout: args.CandidateTimeout.Duration,
		refusedTTL:       args.RefusedTargetTTL.Duration,
		maxInFlight:      args.MaxInFlightPerTarget,
		attempts:         a,
		waitingPod:       func(types.UID) fwk.WaitingPod { return nil },
		activate:         func(*v1.Pod) {},
		onDecided:        func() {},
		inflight:         map[types.UID]*reservation{},
		refused:          map[types.UID]*refusals{},
		perTarget:        map[targets.Ref]*targetState{},
		views:            map[targets.Ref]*targetView{},
		blind:            map[types.UID]*blindSpot{},
		changed:          map[types.UID]*notifier{},
	}
}

// reservation is a proxy this source sends (or sent) to a target.
type reservation struct {
	target   *targets.Target
	proxy    *v1.Pod
	requests v1.ResourceList
	chaperon string
	// noReservation: the proxy binds as soon as the chaperon exists, and
	// books nothing (multicluster.admiralty.io/no-reservation).
	noReservation bool

	state sendState
	// chaperonUID is the sent chaperon's (state sent): only its own
	// chaperon's status decides the proxy.
	chaperonUID types.UID
	// nodeName is the target node, once the candidate is placed.
	nodeName string
	// decided: the target's verdict arrived (or sending failed).
	decided bool
	// ended: Unreserve or PostBind ran; nothing of the attempt may keep
	// running.
	ended bool
	// cancel ends the send when the attempt ends first.
	cancel context.CancelFunc
	// slot: the reservation holds one of its target's places; queued: it
	// waits for one, and granted is closed when it gets it.
	slot, queued bool
	granted      chan struct{}
	// timer fires when the target made no progress on the chaperons of
	// this source for candidateTimeout (a change of any of them, by
	// resourceVersion, is progress: a target working through its queue is
	// not stalled, however long this one waits).
	timer      clock.Timer
	progressRV string
}

// sendState is how far the chaperon of a reservation got.
type sendState int

const (
	// notSent: waiting for the proxy's previous chaperons to go, or for a
	// place; nothing to delete if the attempt ends.
	notSent sendState = iota
	// creating: the create request is out; whoever ends the attempt
	// leaves the deletion to the send, which knows what was created.
	creating
	// sent: the chaperon chaperonUID exists in the target.
	sent
)

// targetState is one target's places among this source's chaperons in
// flight (Args.MaxInFlightPerTarget).
type targetState struct {
	inFlight int
	// queue: the reservations waiting for a place, in order.
	queue []*reservation
	// progress is when one of this source's chaperons there last changed.
	progress time.Time
}

// refusals are the targets that refused a proxy, each avoided for a while
// that doubles with each refusal by that target, up to
// maxRefusalFactor×refusedTargetTTL: a pod that every target refuses costs
// ever fewer chaperons. timer activates the proxy when the first of them
// may be tried again.
type refusals struct {
	proxy    *v1.Pod
	byTarget map[targets.Ref]*refusal
	timer    clock.Timer
}

type refusal struct {
	until   time.Time
	message string
	count   int
}

// maxRefusalFactor caps the doubling of refusedTargetTTL.
const maxRefusalFactor = 16

// after runs f after d, on its own goroutine: a fake clock runs callbacks
// while it holds its lock, and f may read the clock.
func (d *dispatcher) after(dur time.Duration, f func()) clock.Timer {
	return d.clock.AfterFunc(dur, func() {
		d.timers.Add(1)
		go func() {
			defer d.timers.Done()
			f()
		}()
	})
}

func (d *dispatcher) traceStep(step string, proxy types.UID) {
	if d.trace != nil {
		d.trace(step, proxy)
	}
}

// reserve starts the attempt of proxy to t; the framework ends it with
// unreserve or bound.
func (d *dispatcher) reserve(proxy *v1.Pod, t *targets.Target, requests v1.ResourceList, chaperon string, noReservation bool) *reservation {
	r := &reservation{target: t, proxy: proxy, requests: requests, chaperon: chaperon, noReservation: noReservation}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old := d.inflight[proxy.UID]; old != nil {
		// The framework ends every attempt before the next; be safe.
		d.endLocked(old)
	}
	d.inflight[proxy.UID] = r
	return r
}

// reservation returns the proxy's current attempt, if any.
func (d *dispatcher) reservation(uid types.UID) *reservation {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.inflight[uid]
}

// refusedBefore tells whether a target refused the proxy before.
func (d *dispatcher) refusedBefore(uid types.UID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refused[uid] != nil
}

// unreserve ends the attempt (the framework's Unreserve) and deletes its
// chaperon if one was sent: a chaperon still being created is deleted by
// its send once created. timeout explains an attempt without a verdict
// (the framework's bound on Permit passed). It returns the attempt.
func (d *dispatcher) unreserve(ctx context.Context, uid types.UID, timeout string) *reservation {
	d.mu.Lock()
	r := d.inflight[uid]
	if r == nil {
		d.mu.Unlock()
		return nil
	}
	delete(d.inflight, uid)
	if !r.decided {
		d.refuseLocked(r.proxy, r.target.Ref, timeout)
	}
	d.endLocked(r)
	sentUID := types.UID("")
	if r.state == sent {
		sentUID = r.chaperonUID
	}
	d.mu.Unlock()
	if sentUID != "" {
		go d.deleteChaperon(context.WithoutCancel(ctx), r.target, r.proxy.Namespace, r.chaperon, sentUID, "unreserved")
	}
	d.forgetTargetIfGone(r.target.Ref)
	return r
}

// bound ends the attempt of a bound proxy (PostBind). Its booking stays
// briefly: the target's summary counts the delegate within its update
// interval (1s by default).
func (d *dispatcher) bound(uid types.UID) {
	d.mu.Lock()
	r := d.inflight[uid]
	if r != nil {
		d.endLocked(r)
	}
	d.forgetPodLocked(uid)
	d.mu.Unlock()
	if r == nil {
		return
	}
	d.after(3*time.Second, func() {
		d.mu.Lock()
		if d.inflight[uid] == r {
			delete(d.inflight, uid)
		}
		d.mu.Unlock()
		d.forgetTargetIfGone(r.target.Ref)
	})
}

// podGone forgets a deleted proxy.
func (d *dispatcher) podGone(uid types.UID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forgetPodLocked(uid)
	delete(d.blind, uid)
	d.notifyLocked(uid)
}

func (d *dispatcher) forgetPodLocked(uid types.UID) {
	if rf := d.refused[uid]; rf != nil {
		if rf.timer != nil {
			rf.timer.Stop()
		}
		delete(d.refused, uid)
	}
}

// endLocked: the attempt is over; nothing of it may keep running.
func (d *dispatcher) endLocked(r *reservation) {
	r.ended = true
	d.releaseLocked(r)
	if r.cancel != nil {
		r.cancel()
	}
}

// releaseLocked gives the reservation's place back (to the first in the
// target's queue), or leaves the queue, and stops its verdict timer.
func (d *dispatcher) releaseLocked(r *reservation) {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	ref := r.target.Ref
	ts := d.perTarget[ref]
	if ts == nil {
		return
	}
	switch {
	case r.slot:
		r.slot = false
		ts.inFlight--
		if len(ts.queue) > 0 {
			next := ts.queue[0]
			ts.queue = ts.queue[1:]
			next.queued, next.slot = false, true
			ts.inFlight++
			close(next.granted)
		}
	case r.queued:
		r.queued = false
		ts.queue = slices.DeleteFunc(ts.queue, func(q *reservation) bool { return q == r })
	}
	d.targetChangedLocked(ref)
}

// targetChangedLocked updates the target's gauges and forgets its state
// once idle.
func (d *dispatcher) targetChangedLocked(ref targets.Ref) {
	ts := d.perTarget[ref]
	name := ref.String()
	if ts != nil && (ts.inFlight > 0 || len(ts.queue) > 0) {
		inFlight.WithLabelValues(name).Set(float64(ts.inFlight))
		queued.WithLabelValues(name).Set(float64(len(ts.queue)))
		return
	}
	delete(d.perTarget, ref)
	if d.views[ref] != nil {
		inFlight.WithLabelValues(name).Set(0)
		queued.WithLabelValues(name).Set(0)
	} else {
		inFlight.DeleteLabelValues(name)
		queued.DeleteLabelValues(name)
	}
}

// acquire waits for a place among the target's chaperons in flight. It
// fails when the attempt ends or is decided first.
func (d *dispatcher) acquire(ctx context.Context, r *reservation) error {
	ref := r.target.Ref
	d.mu.Lock()
	if r.ended || r.decided {
		d.mu.Unlock()
		return fmt.Errorf("the attempt ended")
	}
	ts := d.perTarget[ref]
	if ts == nil {
		ts = &targetState{}
		d.perTarget[ref] = ts
	}
	if ts.inFlight < d.maxInFlight && len(ts.queue) == 0 {
		ts.inFlight++
		r.slot = true
		d.targetChangedLocked(ref)
		d.mu.Unlock()
		return nil
	}
	r.queued, r.granted = true, make(chan struct{})
	ts.queue = append(ts.queue, r)
	d.targetChangedLocked(ref)
	granted := r.granted
	d.mu.Unlock()
	d.traceStep("queued", r.proxy.UID)
	select {
	case <-granted:
	case <-ctx.Done():
		// endLocked left the queue, or gives the place back.
		return ctx.Err()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if r.ended || r.decided {
		return fmt.Errorf("the attempt ended")
	}
	return nil
}

// progressLocked records a change of r's chaperon (the target working on
// it) and starts the verdict timer if it is not running.
func (d *dispatcher) progressLocked(r *reservation, rv string) {
	if r.decided || !r.slot || rv == r.progressRV {
		return
	}
	r.progressRV = rv
	if ts := d.perTarget[r.target.Ref]; ts != nil {
		ts.progress = d.clock.Now()
	}
	if r.timer == nil {
		r.timer = d.after(d.candidateTimeout, func() { d.timedOut(r) })
	}
}

// timedOut: the target made no progress on this source's chaperons for
// candidateTimeout. The pod is refused there; the pods waiting for a
// place in that target go elsewhere now rather than wait behind it.
func (d *dispatcher) timedOut(r *reservation) {
	uid := r.proxy.UID
	message := "no answer within " + d.candidateTimeout.String()
	behindMessage := fmt.Sprintf("%s: gave no verdict on an earlier pod within %s; not waiting behind it", r.target.Ref.Name, d.candidateTimeout)
	d.mu.Lock()
	if d.inflight[uid] != r || r.decided || !r.slot {
		d.mu.Unlock()
		return
	}
	if since := d.clock.Since(d.perTarget[r.target.Ref].progress); since < d.candidateTimeout {
		// The target works on other chaperons of this source: wait on.
		r.timer = d.after(d.candidateTimeout-since, func() { d.timedOut(r) })
		d.mu.Unlock()
		return
	}
	// All decided before the place is given back, so that none of those
	// behind takes it.
	var behind []*reservation
	for _, q := range d.inflight {
		if q != r && q.target.Ref == r.target.Ref && !q.decided && !q.slot && q.state == notSent {
			d.decideLocked(q, behindMessage)
			behind = append(behind, q)
		}
	}
	d.decideLocked(r, message)
	d.mu.Unlock()
	klog.Background().V(2).Info("Target gave no verdict in time", "pod", klog.KObj(r.proxy), "target", r.target.Ref.String(), "timeout", d.candidateTimeout, "podsRedirected", len(behind))
	d.attempts.timedOut(uid)
	d.tell(uid, false, message)
	for _, q := range behind {
		d.tell(q.proxy.UID, false, behindMessage)
	}
	d.onDecided()
}

// verdict reads a chaperon's status, as the target's delegator mirrors the
// candidate's: decided, and if so allowed or the refusal.
func verdict(t *targets.Target, c *v1alpha1.PodChaperon) (decided, allowed bool, message string) {
	if c.Status.NodeName != "" {
		// The target's scheduler bound the candidate: its delegator
		// reports the node with the first status that shows it bound.
		return true, true, ""
	}
	for _, cond := range c.Status.Conditions {
		if cond.Type != v1.PodScheduled {
			continue
		}
		switch {
		case cond.Status == v1.ConditionTrue:
			return true, true, ""
		case cond.Reason == v1.PodReasonUnschedulable && c.Status.NominatedNodeName != "":
			// The target's scheduler is preempting pods to make room for
			// the candidate: its verdict comes when they are gone.
			klog.Background().V(2).Info("Target preempting for the candidate", "chaperon", klog.KObj(c), "target", t.Ref.String(), "nominatedNode", c.Status.NominatedNodeName)
		case cond.Reason == v1.PodReasonUnschedulable:
			return true, false, fmt.Sprintf("%s refused the candidate: %s", t.Ref.Name, cond.Message)
		}
	}
	return false, false, ""
}

// chaperonChanged decides the waiting proxy whose very chaperon (by UID)
// this is, from its status. A chaperon being deleted decides nothing: its
// proxy is retried.
func (d *dispatcher) chaperonChanged(t *targets.Target, c *v1alpha1.PodChaperon) {
	uid := types.UID(c.Labels[v1alpha1.LabelParentUID])
	d.mu.Lock()
	d.seenLocked(uid, t.Ref, c.UID)
	r := d.inflight[uid]
	if r == nil || r.decided || r.noReservation || r.state != sent || r.target.Ref != t.Ref || r.chaperonUID != c.UID {
		d.mu.Unlock()
		return
	}
	if c.DeletionTimestamp != nil {
		d.mu.Unlock()
		d.retry(r, fmt.Sprintf("%s %s/%s is being deleted in %s before the candidate was placed", sentKind(t), c.Namespace, c.Name, t.Ref.Name))
		return
	}
	if c.Status.NodeName != "" && r.nodeName == "" {
		r.nodeName = c.Status.NodeName
	}
	d.progressLocked(r, c.ResourceVersion)
	d.mu.Unlock()
	if decided, allowed, message := verdict(t, c); decided {
		d.decide(r, allowed, message)
	}
}

// chaperonDeleted: a chaperon deleted in the target before its verdict (by
// the source's feedback, a person, the target going away) will never be
// placed; the waiting pod is retried now rather than at candidateTimeout.
func (d *dispatcher) chaperonDeleted(t *targets.Target, c *v1alpha1.PodChaperon) {
	uid := types.UID(c.Labels[v1alpha1.LabelParentUID])
	d.mu.Lock()
	d.seenLocked(uid, t.Ref, c.UID)
	r := d.inflight[uid]
	ours := r != nil && !r.decided && r.state == sent && r.target.Ref == t.Ref && r.chaperonUID == c.UID
	d.mu.Unlock()
	if ours {
		d.retry(r, fmt.Sprintf("%s %s/%s was deleted in %s before the candidate was placed", sentKind(t), c.Namespace, c.Name, t.Ref.Name))
	}
}

// retry rejects the waiting pod without holding it against the target (not
// the target's fault).
func (d *dispatcher) retry(r *reservation, message string) {
	d.mu.Lock()
	if r.decided || d.inflight[r.proxy.UID] != r {
		d.mu.Unlock()
		return
	}
	d.decideLocked(r, "")
	d.mu.Unlock()
	d.tell(r.proxy.UID, false, message)
}

// decide allows or rejects r's waiting proxy, if r is still its attempt.
func (d *dispatcher) decide(r *reservation, allowed bool, message string) {
	uid := r.proxy.UID
	d.mu.Lock()
	if d.inflight[uid] != r || r.decided {
		d.mu.Unlock()
		return
	}
	refusal := ""
	if !allowed {
		refusal = message
	}
	d.decideLocked(r, refusal)
	d.mu.Unlock()
	if allowed {
		klog.Background().V(4).Info("Target accepted the candidate", "pod", klog.KObj(r.proxy), "target", r.target.Ref.String())
	} else {
		klog.Background().V(2).Info("Target refused the candidate", "pod", klog.KObj(r.proxy), "target", r.target.Ref.String(), "message", message)
	}
	d.tell(uid, allowed, message)
	// The booking is now on a node of the target (or gone): pods kept
	// aside by pods in flight may fit.
	d.onDecided()
}

// decideLocked marks r decided and gives its place back; a refusal (not
// empty) has the pod avoid the target.
func (d *dispatcher) decideLocked(r *reservation, refusal string) {
	r.decided = true
	d.releaseLocked(r)
	if refusal != "" {
		d.refuseLocked(r.proxy, r.target.Ref, refusal)
	}
}

// tell records the verdict of a decided attempt and hands it to the
// waiting pod.
func (d *dispatcher) tell(uid types.UID, allowed bool, message string) {
	d.attempts.decided(uid, allowed, message)
	d.deliver(uid, allowed, message, 0)
}

// deliver hands the verdict to the waiting pod. The pod is registered as
// waiting once Permit returned; an answer faster than that is retried.
func (d *dispatcher) deliver(uid types.UID, allowed bool, message string, attempt int) {
	wp := d.waitingPod(uid)
	if wp == nil {
		if attempt < 100 {
			d.after(20*time.Millisecond, func() { d.deliver(uid, allowed, message, attempt+1) })
		}
		return
	}
	if allowed {
		wp.Allow(Name)
	} else {
		wp.Reject(Name, message)
	}
}

// refuseLocked has the proxy avoid the target, for refusedTargetTTL
// doubled with each earlier refusal there (up to maxRefusalFactor times),
// and activates it when the first of its refusals ends.
func (d *dispatcher) refuseLocked(proxy *v1.Pod, ref targets.Ref, message string) {
	rf := d.refused[proxy.UID]
	if rf == nil {
		rf = &refusals{proxy: proxy, byTarget: map[targets.Ref]*refusal{}}
		d.refused[proxy.UID] = rf
	}
	x := rf.byTarget[ref]
	if x == nil {
		x = &refusal{}
		rf.byTarget[ref] = x
	}
	x.count++
	ttl := d.refusedTTL * maxRefusalFactor
	if x.count <= 4 { // 1, 2, 4, 8; then 16 (maxRefusalFactor)
		ttl = d.refusedTTL << (x.count - 1)
	}
	x.until, x.message = d.clock.Now().Add(ttl), message
	d.armLocked(proxy.UID, rf)
}

// armLocked sets the proxy's activation for when its first refusal still
// to come ends.
func (d *dispatcher) armLocked(uid types.UID, rf *refusals) {
	if rf.timer != nil {
		rf.timer.Stop()
		rf.timer = nil
	}
	now := d.clock.Now()
	var next time.Time
	for _, x := range rf.byTarget {
		if x.until.After(now) && (next.IsZero() || x.until.Before(next)) {
			next = x.until
		}
	}
	if next.IsZero() {
		return
	}
	rf.timer = d.after(next.Sub(now), func() {
		d.mu.Lock()
		if d.refused[uid] != rf {
			d.mu.Unlock()
			return
		}
		d.armLocked(uid, rf)
		d.mu.Unlock()
		d.activate(rf.proxy)
	})
}

// recentlyRefused tells whether the target refused the proxy and is still
// avoided, and why.
func (d *dispatcher) recentlyRefused(uid types.UID, ref targets.Ref) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rf := d.refused[uid]
	if rf == nil {
		return "", false
	}
	x := rf.byTarget[ref]
	if x == nil || !d.clock.Now().Before(x.until) {
		return "", false
	}
	return x.message, true
}

// reservations: the requests booked in t by the other proxies in flight
// there, placed on a node or not yet.
func (d *dispatcher) reservations(t *targets.Target, except types.UID) (placed []simulator.Reservation, unplaced []v1.ResourceList) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for uid, r := range d.inflight {
		if r.target.Ref != t.Ref || uid == except || r.noReservation {
			continue
		}
		if r.nodeName != "" {
			placed = append(placed, simulator.Reservation{NodeName: r.nodeName, Requests: r.requests})
		} else {
			unplaced = append(unplaced, r.requests)
		}
	}
	return placed, unplaced
}

// targetAdded starts consulting a live target's chaperons.
func (d *dispatcher) targetAdded(t *targets.Target, chaperons chaperonIndex) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.views[t.Ref] = &targetView{target: t, chaperons: chaperons, added: d.clock.Now()}
	d.notifyAllLocked()
}

// forgetTargetAfter: how long the metrics of a removed target stay (a
// Target whose connection changed is removed, then added at once).
const forgetTargetAfter = time.Minute

// targetRemoved stops consulting a target; its series and memories go
// once it stayed away and idle for forgetTargetAfter.
func (d *dispatcher) targetRemoved(t *targets.Target) {
	d.mu.Lock()
	if v := d.views[t.Ref]; v != nil && v.target == t {
		delete(d.views, t.Ref)
	}
	for uid, b := range d.blind {
		b.forgetTarget(t.Ref)
		if b.empty() {
			delete(d.blind, uid)
		}
	}
	d.notifyAllLocked()
	d.mu.Unlock()
	d.after(forgetTargetAfter, func() { d.forgetTargetIfGone(t.Ref) })
}

// forgetTargetIfGone forgets a target that is not live and has no attempt
// left: its gauges, attempt metrics and the refusals it gave.
func (d *dispatcher) forgetTargetIfGone(ref targets.Ref) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.views[ref] != nil {
		return
	}
	for _, r := range d.inflight {
		if r.target.Ref == ref {
			return
		}
	}
	for uid, rf := range d.refused {
		delete(rf.byTarget, ref)
		if len(rf.byTarget) == 0 {
			d.forgetPodLocked(uid)
		}
	}
	d.targetChangedLocked(ref)
	forgetTargetMetrics(ref.String())
}

// sizes are the lengths of everything the dispatcher keeps (tests).
func (d *dispatcher) sizes() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	refusedTargets := 0
	for _, rf := range d.refused {
		refusedTargets += len(rf.byTarget)
	}
	return map[string]int{
		"inflight": len(d.inflight), "refused": len(d.refused), "refusedTargets": refusedTargets,
		"perTarget": len(d.perTarget), "views": len(d.views), "blind": len(d.blind), "changed": len(d.changed),
	}
}
