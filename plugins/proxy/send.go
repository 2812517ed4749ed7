package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets"
)

// One chaperon per proxy: a proxy's chaperon is sent only once none of its
// earlier ones exists in any target, as the targets' informers show them
// (so after a restart too), with those being created or created and not
// yet seen (blind spots) counted from memory. An earlier chaperon in
// another target, left by a failed delete or a restart, is deleted first;
// one in the chosen target, not being deleted, is the proxy's own and is
// taken over.

// chaperonIndex is what a target's informer shows of this source's
// chaperons.
type chaperonIndex interface {
	// ByProxy returns the chaperons of the proxy (label LabelParentUID).
	ByProxy(uid types.UID) []*v1alpha1.PodChaperon
	// Synced is closed once the informer has listed the target.
	Synced() <-chan struct{}
}

// byParentUID indexes chaperons by their proxy's UID.
const byParentUID = "admiralty.io/parent-uid"

func parentUIDIndex(obj any) ([]string, error) {
	if c, ok := obj.(*v1alpha1.PodChaperon); ok {
		if uid := c.Labels[v1alpha1.LabelParentUID]; uid != "" {
			return []string{uid}, nil
		}
	}
	return nil, nil
}

// informerIndex is a chaperonIndex over a shared informer, which must have
// the byParentUID index (indexInformer).
type informerIndex struct{ informer cache.SharedIndexInformer }

// indexInformer adds the byParentUID index to a chaperon informer not yet
// started.
func indexInformer(inf cache.SharedIndexInformer) (informerIndex, error) {
	if _, ok := inf.GetIndexer().GetIndexers()[byParentUID]; !ok {
		if err := inf.AddIndexers(cache.Indexers{byParentUID: parentUIDIndex}); err != nil {
			return informerIndex{}, err
		}
	}
	return informerIndex{informer: inf}, nil
}

func (i informerIndex) ByProxy(uid types.UID) []*v1alpha1.PodChaperon {
	objs, err := i.informer.GetIndexer().ByIndex(byParentUID, string(uid))
	if err != nil {
		return nil
	}
	out := make([]*v1alpha1.PodChaperon, 0, len(objs))
	for _, obj := range objs {
		if c, ok := obj.(*v1alpha1.PodChaperon); ok {
			out = append(out, c)
		}
	}
	return out
}

func (i informerIndex) Synced() <-chan struct{} { return i.informer.HasSyncedChecker().Done() }

// targetView is a live target and its chaperons.
type targetView struct {
	target    *targets.Target
	chaperons chaperonIndex
	// added: a target whose informer has not synced within
	// candidateTimeout of this (unreachable) is not waited for.
	added time.Time
}

// blindSpot: a proxy's chaperons that the informers may not show yet.
type blindSpot struct {
	creating int
	// created: by chaperon UID, the target and when it was created.
	created map[types.UID]blindCreated
}

type blindCreated struct {
	target targets.Ref
	at     time.Time
}

func (b *blindSpot) empty() bool { return b.creating == 0 && len(b.created) == 0 }

func (b *blindSpot) forgetTarget(ref targets.Ref) {
	for uid, c := range b.created {
		if c.target == ref {
			delete(b.created, uid)
		}
	}
}

// showsLocked tells whether t's informer shows the proxy's chaperon uid
// (its event may come before the create's answer).
func (d *dispatcher) showsLocked(t *targets.Target, proxy, uid types.UID) bool {
	v := d.views[t.Ref]
	if v == nil || v.target != t {
		return false
	}
	for _, c := range v.chaperons.ByProxy(proxy) {
		if c.UID == uid {
			return true
		}
	}
	return false
}

// notifier wakes the sends waiting on a proxy's chaperons.
type notifier struct {
	ch      chan struct{}
	waiters int
}

// seenLocked: the informer of ref showed the proxy's chaperon uid; it is
// no longer a blind spot, and a send waiting on the proxy looks again.
func (d *dispatcher) seenLocked(proxy types.UID, ref targets.Ref, uid types.UID) {
	if b := d.blind[proxy]; b != nil {
		if c, ok := b.created[uid]; ok && c.target == ref {
			delete(b.created, uid)
			if b.empty() {
				delete(d.blind, proxy)
			}
		}
	}
	d.notifyLocked(proxy)
}

func (d *dispatcher) notifyLocked(proxy types.UID) {
	if n := d.changed[proxy]; n != nil {
		close(n.ch)
		n.ch = make(chan struct{})
	}
}

func (d *dispatcher) notifyAllLocked() {
	for uid := range d.changed {
		d.notifyLocked(uid)
	}
}

// watch counts a send waiting on the proxy's chaperons; unwatch when done.
func (d *dispatcher) watch(proxy types.UID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.changed[proxy]
	if n == nil {
		n = &notifier{ch: make(chan struct{})}
		d.changed[proxy] = n
	}
	n.waiters++
}

func (d *dispatcher) unwatch(proxy types.UID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.changed[proxy]; n != nil {
		if n.waiters--; n.waiters <= 0 {
			delete(d.changed, proxy)
		}
	}
}

// earlier is a chaperon of the proxy other than the one to send.
type earlier struct {
	target   *targets.Target
	chaperon *v1alpha1.PodChaperon
}

// predecessorsLocked looks for r's proxy's chaperons: wait while any may
// exist but the one to send; stale ones, in other targets or of another
// name, must be deleted; own is the one to send, already in its target.
func (d *dispatcher) predecessorsLocked(r *reservation) (wait bool, unsynced <-chan struct{}, stale []earlier, own *v1alpha1.PodChaperon) {
	uid := r.proxy.UID
	if b := d.blind[uid]; b != nil {
		for cuid, c := range b.created {
			// An informer that never shows a chaperon (its target went
			// away) is not waited for forever.
			if d.clock.Since(c.at) >= d.candidateTimeout {
				delete(b.created, cuid)
			}
		}
		if b.empty() {
			delete(d.blind, uid)
		} else {
			wait = true
		}
	}
	for ref, v := range d.views {
		select {
		case <-v.chaperons.Synced():
		default:
			// Still listing: wait for it, unless the target has not
			// answered since it was added (unreachable).
			if d.clock.Since(v.added) < d.candidateTimeout {
				wait, unsynced = true, v.chaperons.Synced()
			}
			continue
		}
		for _, c := range v.chaperons.ByProxy(uid) {
			switch {
			case c.DeletionTimestamp != nil:
				wait = true
			case ref == r.target.Ref && c.Name == r.chaperon:
				own = c
			default:
				wait = true
				stale = append(stale, earlier{target: v.target, chaperon: c})
			}
		}
	}
	return wait, unsynced, stale, own
}

var errPredecessor = errors.New("the pod's earlier chaperon (and delegate) is still being deleted")

// clearPredecessors waits, at most candidateTimeout, until the proxy has
// no chaperon but possibly the one to send (returned, to take over),
// deleting those it should not have.
func (d *dispatcher) clearPredecessors(ctx context.Context, r *reservation) (*v1alpha1.PodChaperon, error) {
	uid := r.proxy.UID
	deadline := d.clock.NewTimer(d.candidateTimeout)
	defer deadline.Stop()
	d.watch(uid)
	defer d.unwatch(uid)
	deleted := map[types.UID]bool{}
	for {
		d.mu.Lock()
		// Taken before looking: a change after the look closes it.
		changed := d.changed[uid].ch
		wait, unsynced, stale, own := d.predecessorsLocked(r)
		d.mu.Unlock()
		if !wait {
			return own, nil
		}
		for _, e := range stale {
			if !deleted[e.chaperon.UID] {
				deleted[e.chaperon.UID] = true
				klog.FromContext(ctx).V(2).Info("Deleting an earlier chaperon of the pod", "pod", klog.KObj(r.proxy), "target", e.target.Ref.String(), "chaperon", e.chaperon.Name)
				go d.deleteChaperon(ctx, e.target, e.chaperon.Namespace, e.chaperon.Name, e.chaperon.UID, "earlier chaperon")
			}
		}
		d.traceStep("waiting", uid)
		select {
		case <-changed:
		case <-unsynced:
		case <-deadline.C():
			return nil, errPredecessor
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// permit starts sending r's chaperon, off the scheduling cycle.
func (d *dispatcher) permit(ctx context.Context, r *reservation, chaperon *v1alpha1.PodChaperon) {
	sendCtx, cancel := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), klog.FromContext(ctx)))
	d.mu.Lock()
	if r.ended {
		d.mu.Unlock()
		cancel()
		return
	}
	r.cancel = cancel
	d.mu.Unlock()
	go d.send(sendCtx, r, chaperon)
}

// send creates the chaperon in the target (or takes over the proxy's own,
// already there) and, on failure, rejects the pod.
//
// ctx ends with the attempt (endLocked). The proxy's earlier chaperons
// must be gone, and the target must have a place among its chaperons in
// flight, before this one is sent.
func (d *dispatcher) send(ctx context.Context, r *reservation, chaperon *v1alpha1.PodChaperon) {
	own, err := d.clearPredecessors(ctx, r)
	if err != nil {
		if ctx.Err() == nil {
			d.retry(r, err.Error())
		}
		return
	}
	if err := d.acquire(ctx, r); err != nil {
		return
	}
	if own != nil {
		d.sent(ctx, r, own)
		return
	}
	uid := r.proxy.UID
	d.mu.Lock()
	if r.ended || r.decided {
		d.mu.Unlock()
		return
	}
	r.state = creating
	b := d.blind[uid]
	if b == nil {
		b = &blindSpot{created: map[types.UID]blindCreated{}}
		d.blind[uid] = b
	}
	b.creating++
	d.mu.Unlock()
	d.traceStep("creating", uid)

	// Not cancelled with the attempt: a create cut short may still happen,
	// and then its chaperon must be known and deleted.
	createCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.candidateTimeout)
	defer cancel()
	client := r.target.MCClient.MulticlusterV1alpha1().PodChaperons(chaperon.Namespace)
	created, err := client.Create(createCtx, chaperon, metav1.CreateOptions{})
	if isAlreadyExists(err) {
		// Sent before (a restart, an attempt the informer has not shown
		// yet): it is ours only if it names this very proxy.
		created, err = client.Get(createCtx, chaperon.Name, metav1.GetOptions{})
		switch {
		case err != nil:
		case created.Labels[v1alpha1.LabelParentUID] != string(uid):
			err = fmt.Errorf("%s %s/%s exists in %s and belongs to another pod", sentKind(r.target), chaperon.Namespace, chaperon.Name, r.target.Ref.Name)
			created = nil
		case created.DeletionTimestamp != nil:
			err = errPredecessor
		}
	}

	d.mu.Lock()
	b.creating--
	if err == nil && !d.showsLocked(r.target, uid, created.UID) {
		b.created[created.UID] = blindCreated{target: r.target.Ref, at: d.clock.Now()}
	}
	if b.empty() && d.blind[uid] == b {
		delete(d.blind, uid)
	}
	d.notifyLocked(uid)
	ended := r.ended
	if err != nil {
		r.state = notSent
	}
	d.mu.Unlock()

	switch {
	case err == nil && ended:
		// The attempt ended while the create was out: its chaperon goes.
		d.deleteChaperon(ctx, r.target, created.Namespace, created.Name, created.UID, "ended while created")
	case err == nil:
		d.sent(ctx, r, created)
	case ended:
	case errors.Is(err, errPredecessor):
		d.retry(r, err.Error())
	default:
		klog.FromContext(ctx).Error(err, "Cannot send the chaperon", "pod", klog.KObj(r.proxy), "target", r.target.Ref.String())
		d.decide(r, false, fmt.Sprintf("%s: cannot create the %s: %v", r.target.Ref.Name, sentKind(r.target), err))
	}
}

// sent: r's chaperon c exists in the target. Its current status, as the
// informer shows it, may decide the proxy already.
func (d *dispatcher) sent(ctx context.Context, r *reservation, c *v1alpha1.PodChaperon) {
	d.mu.Lock()
	if r.ended {
		d.mu.Unlock()
		// Ended while it was taken over: it goes.
		d.deleteChaperon(ctx, r.target, c.Namespace, c.Name, c.UID, "ended while sent")
		return
	}
	r.state, r.chaperonUID = sent, c.UID
	d.progressLocked(r, c.ResourceVersion)
	var index chaperonIndex
	if v := d.views[r.target.Ref]; v != nil && v.target == r.target {
		index = v.chaperons
	}
	d.mu.Unlock()
	defer d.traceStep("sent", r.proxy.UID)
	d.attempts.sent(r.proxy.UID, sentKind(r.target), c.Name)
	if r.noReservation {
		// The pod is committed to this target: it binds now and waits
		// there for room, never moved elsewhere.
		d.decide(r, true, "")
		return
	}
	// The informer's store is updated before its handlers run: what it
	// shows now, with the events to come, misses no change of c.
	if index != nil {
		for _, cur := range index.ByProxy(r.proxy.UID) {
			if cur.UID == c.UID {
				c = cur
			}
		}
	}
	d.chaperonChanged(r.target, c)
}

// deleteChaperon deletes the chaperon uid (foreground: it goes once its
// delegate is gone, and its disappearance lets the proxy's next chaperon
// go). A failure is logged: the next attempt of the proxy, or the
// delegator's cleanup, deletes it.
func (d *dispatcher) deleteChaperon(ctx context.Context, t *targets.Target, namespace, name string, uid types.UID, why string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), targets.RequestTimeout)
	defer cancel()
	foreground := metav1.DeletePropagationForeground
	err := t.MCClient.MulticlusterV1alpha1().PodChaperons(namespace).Delete(ctx, name, metav1.DeleteOptions{
		PropagationPolicy: &foreground,
		Preconditions:     &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !isNotFound(err) && !isConflict(err) {
		klog.FromContext(ctx).Error(err, "Cannot delete a chaperon", "target", t.Ref.String(), "chaperon", klog.KRef(namespace, name), "why", why)
	}
}
