// Package feedback is the source side of the delegate lifecycle: for each
// proxy pod it feeds the delegate's status (as the target mirrors it on the
// PodChaperon) back to the proxy, deletes what lost (chaperons of a proxy
// in targets other than the one it is bound to, chaperons of deleted
// proxies), plays the kubelet's part in deleting a proxy (a virtual node has
// no kubelet to confirm a graceful deletion), and deletes a proxy whose
// chaperon was deleted by someone else, so that its controller makes a new
// one; in a self target, whose delegates are their own chaperons
// (targets.SelfChaperons), it makes a deleted delegate again, as a
// target's chaperon controller does elsewhere. It uses no finalizer: whatever it must clean is found again from the
// chaperons' labels after a restart, so nothing can be left stuck.
package feedback

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/delegator/chaperon"
	"admiralty.io/multicluster-scheduler/delegator/controller"
	"admiralty.io/multicluster-scheduler/proxypod"
	"admiralty.io/multicluster-scheduler/targets"
)

// Event reasons on proxy pods.
const (
	ReasonDelegateLost      = "DelegateLost"
	ReasonChaperonDeleted   = "ChaperonDeleted"
	ReasonFeedbackFailed    = "FeedbackFailed"
	ReasonDelegateRecreated = "DelegateRecreated"
)

// lostGrace is how long a bound proxy's chaperon may be missing before the
// proxy is deleted: it covers this process's informers lagging behind the
// scheduler's, which bound the proxy only after seeing the chaperon.
const lostGrace = 10 * time.Second

const indexByProxy = "proxy"

// liveTargets is what the controller reads of the targets.Registry.
type liveTargets interface {
	List() []*targets.Target
	ByVirtualNode(name string) *targets.Target
}

// Controller feeds back delegates' status and cleans up.
type Controller struct {
	clusterName string
	client      kubernetes.Interface
	recorder    record.EventRecorder
	registry    liveTargets
	proxies     corelisters.PodLister
	controller  *controller.Controller
	clock       clock.WithDelayedExecution
	enqueue     func(key string)

	mu sync.Mutex
	// missingSince: when a bound proxy was first seen without its chaperon
	// (see lost), until it has one again or is deleted.
	missingSince map[types.UID]time.Time
	// deleted: the proxies whose deletion this process's informer saw. A
	// chaperon of one of them needs no look at the API before it is
	// deleted (see stale).
	deleted recent[struct{}]
	// deletedChaperons: the chaperons this controller deleted, until the
	// informer shows it. Without it, a proxy's key queued again before the
	// chaperon's deletion came through the watch (by an earlier event of
	// that chaperon) deleted it a second time: 13% of the chaperons in a
	// bench cleanup, each request answered 404.
	deletedChaperons recent[struct{}]
	// selfDelegates: what a self target's delegates showed, by proxy UID,
	// for making one again (remake).
	selfDelegates recent[selfDelegate]
	// pruneArmed: a timer will forget the old entries of the recent maps.
	pruneArmed bool
}

// selfDelegate is what is remembered of a self target's delegate (which
// stands for its chaperon, targets.SelfChaperons).
type selfDelegate struct {
	// finished: seen Succeeded or Failed before any deletion; never made
	// again.
	finished bool
	// deleted, with the topology spread constraints it had: Permit leaves
	// out of a delegate those it decides across clusters, which the
	// proxy's original keeps.
	deleted bool
	spread  []corev1.TopologySpreadConstraint
}

// recent remembers a value per UID for deletedMemory after it was last
// put (under Controller.mu); a timer forgets the old ones (armPrune).
type recent[V any] struct {
	at map[types.UID]remembered[V]
}

type remembered[V any] struct {
	at time.Time
	v  V
}

func (r *recent[V]) put(uid types.UID, now time.Time, v V) {
	if r.at == nil {
		r.at = map[types.UID]remembered[V]{}
	}
	r.at[uid] = remembered[V]{at: now, v: v}
}

func (r *recent[V]) get(uid types.UID, now time.Time) (V, bool) {
	m, ok := r.at[uid]
	if !ok || now.Sub(m.at) > deletedMemory {
		var zero V
		return zero, false
	}
	return m.v, true
}

func (r *recent[V]) has(uid types.UID, now time.Time) bool {
	_, ok := r.get(uid, now)
	return ok
}

// prune forgets what was put more than deletedMemory before now.
func (r *recent[V]) prune(now time.Time) {
	for u, m := range r.at {
		if now.Sub(m.at) > deletedMemory {
			delete(r.at, u)
		}
	}
}

// armPrune has the recent maps pruned once deletedMemory has passed, unless
// a timer is already set; the maps are walked once per deletedMemory at
// most, not at every put. Call it without holding c.mu.
func (c *Controller) armPrune() {
	c.mu.Lock()
	armed := c.pruneArmed
	c.pruneArmed = true
	c.mu.Unlock()
	if armed {
		return
	}
	// A moment past deletedMemory: what was put until now is then older
	// than it.
	after := deletedMemory + time.Second
	at := c.clock.Now().Add(after)
	c.clock.AfterFunc(after, func() { c.prune(at) })
}

// prune forgets the old entries of the recent maps, and sets the timer
// again while some remain. It does not read the clock: a fake clock runs
// it while it holds its own lock.
func (c *Controller) prune(now time.Time) {
	c.mu.Lock()
	c.deleted.prune(now)
	c.deletedChaperons.prune(now)
	c.selfDelegates.prune(now)
	c.pruneArmed = false
	more := len(c.deleted.at)+len(c.deletedChaperons.at)+len(c.selfDelegates.at) > 0
	c.mu.Unlock()
	if more {
		go c.armPrune()
	}
}

// deletedMemory is how long the UID of a deleted proxy or chaperon is
// remembered: long enough for the chaperons' deletions to be seen.
const deletedMemory = time.Minute

// NewController is the delegator's factory of the feedback controller.
func NewController(_ context.Context, d *app.Delegator) (app.Controller, error) {
	pods := d.Proxies.Core().V1().Pods()
	c := &Controller{
		clusterName:  d.Options.ClusterName,
		client:       d.Client,
		recorder:     d.Recorder,
		registry:     d.Targets,
		proxies:      pods.Lister(),
		missingSince: map[types.UID]time.Time{},
		clock:        clock.RealClock{},
	}
	c.controller = controller.New("feedback", d.Options.Workers, c.reconcile)
	c.enqueue = c.controller.EnqueueKey
	_, _ = pods.Informer().AddEventHandler(recordDeletes{c.controller.Handler(), c})
	c.controller.WaitFor(pods.Informer().HasSynced)
	d.Targets.Subscribe(c)
	d.Targets.OnReadable(c.targetReadable)
	return c, nil
}

// targetReadable looks again at what was skipped while t was not readable
// (see reconcile): whatever lost while it was away (the proxies that
// failover or a user deleted meanwhile) is deleted there, and the proxies
// bound to it get their status, or are found lost. Its chaperon informer
// may not relist, so every key is looked at.
func (c *Controller) targetReadable(t *targets.Target) {
	for _, o := range t.Chaperons.Multicluster().V1alpha1().PodChaperons().Informer().GetStore().List() {
		if ch, ok := o.(*v1alpha1.PodChaperon); ok {
			c.enqueue(proxyKey(ch))
		}
	}
	node := t.Ref.VirtualNodeName()
	pods, _ := c.proxies.List(labels.Everything())
	for _, pod := range pods {
		if pod.Spec.NodeName == node {
			c.enqueue(pod.Namespace + "/" + pod.Name)
		}
	}
}

// Name of the control loop.
func (c *Controller) Name() string { return c.controller.Name() }

// Start runs until ctx is done.
func (c *Controller) Start(ctx context.Context) error {
	return c.controller.Start(ctx)
}

// TargetAdded implements targets.Handler: chaperon events map to their
// proxy's key.
func (c *Controller) TargetAdded(t *targets.Target) {
	inf := t.Chaperons.Multicluster().V1alpha1().PodChaperons().Informer()
	// Fails if the informer already runs (another handler started it first);
	// lookups then scan the namespace instead.
	_ = inf.AddIndexers(cache.Indexers{indexByProxy: func(obj any) ([]string, error) {
		ch, ok := obj.(*v1alpha1.PodChaperon)
		if !ok {
			return nil, nil
		}
		return []string{proxyKey(ch)}, nil
	}})
	_, _ = inf.AddEventHandler(c.controller.MappedHandler(func(obj any) []string {
		if ch, ok := obj.(*v1alpha1.PodChaperon); ok {
			return []string{proxyKey(ch)}
		}
		return nil
	}))
	if t.Self {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.noteSelfDelegate(obj, false) },
			UpdateFunc: func(_, obj any) { c.noteSelfDelegate(obj, false) },
			DeleteFunc: func(obj any) { c.noteSelfDelegate(controller.Object(obj), true) },
		})
	}
}

// noteSelfDelegate remembers, of a self target's delegate, whether it
// finished (watch events come in order: a delegate that finished, then was
// deleted, is seen finished first) and, once deleted, its topology spread
// constraints.
func (c *Controller) noteSelfDelegate(obj any, deleted bool) {
	ch, ok := obj.(*v1alpha1.PodChaperon)
	if !ok {
		return
	}
	finished := chaperon.IsTerminal(ch.Status.Phase) && ch.DeletionTimestamp == nil
	if !finished && !deleted {
		return
	}
	uid := types.UID(ch.Labels[v1alpha1.LabelParentUID])
	now := c.clock.Now()
	c.mu.Lock()
	m, _ := c.selfDelegates.get(uid, now)
	m.finished = m.finished || finished
	if deleted {
		m.deleted, m.spread = true, ch.Spec.TopologySpreadConstraints
	}
	c.selfDelegates.put(uid, now, m)
	c.mu.Unlock()
	c.armPrune()
}

// TargetRemoved implements targets.Handler. Proxies bound to a removed
// target keep their last status; a new Target for the same cluster picks
// them up again.
func (c *Controller) TargetRemoved(*targets.Target) {}

func proxyKey(ch *v1alpha1.PodChaperon) string {
	return ch.Annotations[v1alpha1.AnnotationParentNamespace] + "/" + ch.Annotations[v1alpha1.AnnotationParentName]
}

// chaperonsOf lists the chaperons in t that name the proxy key.
func chaperonsOf(t *targets.Target, key string) []*v1alpha1.PodChaperon {
	inf := t.Chaperons.Multicluster().V1alpha1().PodChaperons().Informer()
	var out []*v1alpha1.PodChaperon
	if objs, err := inf.GetIndexer().ByIndex(indexByProxy, key); err == nil {
		for _, o := range objs {
			out = append(out, o.(*v1alpha1.PodChaperon))
		}
		return out
	}
	for _, o := range inf.GetStore().List() {
		if ch := o.(*v1alpha1.PodChaperon); proxyKey(ch) == key {
			out = append(out, ch)
		}
	}
	return out
}

func (c *Controller) reconcile(ctx context.Context, key string) (controller.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controller.Result{}, nil
	}
	pod, err := c.proxies.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		pod = nil
	} else if err != nil {
		return controller.Result{}, err
	}
	// Only the targets whose chaperon cache may be trusted: one not synced
	// yet (a restart while the target is down) shows no chaperon, which
	// is not a lost one, and one that stopped answering shows the past.
	// What is skipped here is looked at again on targetReadable.
	var live []*targets.Target
	readable := map[*targets.Target]bool{}
	for _, t := range c.registry.List() {
		if t.Readable() {
			live = append(live, t)
			readable[t] = true
		}
	}
	// This informer may lag behind the chaperons' (a proxy created, then
	// scheduled, a moment ago; a restart): before deleting a chaperon
	// because its proxy seems gone or another incarnation, ask the API.
	if c.stale(pod, live, key) {
		fresh, err := c.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			pod = nil
		case err != nil:
			return controller.Result{}, err
		case fresh.Labels[v1alpha1.LabelIsProxy] == "true":
			pod = fresh
		}
	}
	var bound *targets.Target
	if pod != nil && pod.Spec.NodeName != "" {
		bound = c.registry.ByVirtualNode(pod.Spec.NodeName)
	}

	// Delete what lost: chaperons of another incarnation of this name, of
	// a deleted or deleting proxy, or in a target the proxy is not bound to
	// (once it is bound: before that, the scheduler is still deciding).
	var mine *v1alpha1.PodChaperon
	for _, t := range live {
		for _, ch := range chaperonsOf(t, key) {
			keep := pod != nil && pod.DeletionTimestamp == nil &&
				ch.Labels[v1alpha1.LabelParentUID] == string(pod.UID) &&
				(pod.Spec.NodeName == "" || t == bound)
			if keep {
				if t == bound {
					mine = ch
				}
				continue
			}
			if c.chaperonDeleted(ch.UID) {
				continue
			}
			if err := c.deleteChaperon(ctx, t, ch); err != nil {
				if t.Unreachable() {
					// Deleted when the target answers again (see
					// targetReadable); the proxy need not wait for it.
					klog.FromContext(ctx).V(2).Info("Chaperon left in an unreachable target until it answers", "chaperon", klog.KObj(ch), "target", t.Ref.String())
					continue
				}
				return controller.Result{}, err
			}
		}
	}
	if pod == nil {
		return controller.Result{}, nil
	}
	if pod.DeletionTimestamp != nil {
		if !awaitsKubelet(pod) {
			return controller.Result{}, nil
		}
		// What a kubelet does once the containers are gone: the delegate's
		// chaperon is deleted above, the delegate with it (owner reference).
		return controller.Result{}, c.forceDelete(ctx, pod)
	}
	if bound == nil {
		return controller.Result{}, nil
	}
	if !readable[bound] {
		// Nothing known of its delegate: the proxy keeps its last status,
		// and is not lost (failover handles a target that stays away).
		c.mu.Lock()
		delete(c.missingSince, pod.UID)
		c.mu.Unlock()
		return controller.Result{}, nil
	}
	if mine == nil {
		return c.lost(ctx, pod, bound)
	}
	c.mu.Lock()
	delete(c.missingSince, pod.UID)
	c.mu.Unlock()
	return controller.Result{}, c.feedback(ctx, pod, mine)
}

// stale tells whether a chaperon of key in a live target names a proxy
// that the cached pod is not: the cache may not have caught up yet, unless
// that proxy's deletion was seen (chaperons this controller deleted do
// not count).
func (c *Controller) stale(pod *corev1.Pod, live []*targets.Target, key string) bool {
	for _, t := range live {
		for _, ch := range chaperonsOf(t, key) {
			if c.chaperonDeleted(ch.UID) {
				continue
			}
			uid := types.UID(ch.Labels[v1alpha1.LabelParentUID])
			if (pod == nil || uid != pod.UID) && !c.sawDeleted(uid) {
				return true
			}
		}
	}
	return false
}

// recordDeletes has the controller's handler remember a deleted proxy
// before its key is queued.
type recordDeletes struct {
	cache.ResourceEventHandler
	c *Controller
}

func (r recordDeletes) OnDelete(obj any) {
	r.c.proxyDeleted(obj)
	r.ResourceEventHandler.OnDelete(obj)
}

// proxyDeleted remembers the UID of a deleted proxy.
func (c *Controller) proxyDeleted(obj any) {
	pod, ok := controller.Object(obj).(*corev1.Pod)
	if !ok {
		return
	}
	now := c.clock.Now()
	c.mu.Lock()
	c.deleted.put(pod.UID, now, struct{}{})
	delete(c.missingSince, pod.UID)
	c.mu.Unlock()
	c.armPrune()
}

func (c *Controller) sawDeleted(uid types.UID) bool {
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deleted.has(uid, now)
}

func (c *Controller) chaperonDeleted(uid types.UID) bool {
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deletedChaperons.has(uid, now)
}

func (c *Controller) deleteChaperon(ctx context.Context, t *targets.Target, ch *v1alpha1.PodChaperon) error {
	uid := ch.UID
	err := t.MCClient.MulticlusterV1alpha1().PodChaperons(ch.Namespace).Delete(ctx, ch.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting chaperon %s/%s in %s: %w", ch.Namespace, ch.Name, t.Ref.Name, err)
	}
	// Gone, or going (NotFound, or Conflict: the name is another
	// chaperon's now): this UID is never to be deleted again.
	now := c.clock.Now()
	c.mu.Lock()
	c.deletedChaperons.put(uid, now, struct{}{})
	c.mu.Unlock()
	c.armPrune()
	klog.FromContext(ctx).V(2).Info("Deleted chaperon", "chaperon", klog.KObj(ch), "target", t.Ref.String())
	return nil
}

// awaitsKubelet tells whether a deleting pod waits for its node's final
// delete. One deleted with a grace period of 0 does not: the API server
// removes it in the same request, or, if it has finalizers, once the last
// is removed; another delete would only find it gone (one request per
// proxy of a `kubectl delete --grace-period=0 --force` or of a
// DeleteCollection that asks for it).
func awaitsKubelet(pod *corev1.Pod) bool {
	return pod.DeletionGracePeriodSeconds == nil || *pod.DeletionGracePeriodSeconds > 0
}

func (c *Controller) forceDelete(ctx context.Context, pod *corev1.Pod) error {
	zero := int64(0)
	uid := pod.UID
	err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return err
	}
	return nil
}

// lost handles a bound proxy without a chaperon in its target.
func (c *Controller) lost(ctx context.Context, pod *corev1.Pod, t *targets.Target) (controller.Result, error) {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		// Finished: the delegate may be cleaned up in the target, the
		// proxy keeps its final status.
		return controller.Result{}, nil
	}
	now := c.clock.Now()
	c.mu.Lock()
	since, ok := c.missingSince[pod.UID]
	// A proxy whose deletion was seen meanwhile is not remembered again
	// (its delete event already pruned the map).
	if !ok && !c.deleted.has(pod.UID, now) {
		since = now
		c.missingSince[pod.UID] = since
	}
	c.mu.Unlock()
	if !ok && since.IsZero() {
		return controller.Result{}, nil
	}
	if wait := lostGrace - now.Sub(since); wait > 0 {
		return controller.Result{RequeueAfter: wait}, nil
	}
	what := "PodChaperon"
	if t.Self {
		what = "delegate"
		done, err := c.remake(ctx, pod, t)
		if err != nil {
			return controller.Result{}, err
		}
		if done {
			c.mu.Lock()
			delete(c.missingSince, pod.UID)
			c.mu.Unlock()
			return controller.Result{}, nil
		}
	}
	msg := fmt.Sprintf("the %s of this pod in %s was deleted; deleting the proxy so that its controller replaces it", what, t.Ref.Name)
	klog.FromContext(ctx).Info("Delegate lost", "pod", klog.KObj(pod), "target", t.Ref.String())
	c.recorder.Event(pod, corev1.EventTypeWarning, ReasonDelegateLost, msg)
	c.mu.Lock()
	delete(c.missingSince, pod.UID)
	c.mu.Unlock()
	return controller.Result{}, c.forceDelete(ctx, pod)
}

// remake makes a self target's delegate again (its chaperon, which the
// target's delegator would remake it from, is the delegate itself,
// targets.SelfChaperons), from the proxy's original pod, as Permit made it,
// unless it finished. done is false when it cannot be made from the proxy
// (no original manifest): the proxy is then lost.
func (c *Controller) remake(ctx context.Context, pod *corev1.Pod, t *targets.Target) (done bool, err error) {
	now := c.clock.Now()
	c.mu.Lock()
	memo, _ := c.selfDelegates.get(pod.UID, now)
	c.mu.Unlock()
	if memo.finished {
		// Its final status is fed back; it never runs again.
		return true, nil
	}
	// The cache keeps no manifest.
	fresh, err := c.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if fresh.UID != pod.UID || fresh.DeletionTimestamp != nil {
		return true, nil
	}
	source, err := proxypod.SourcePod(fresh)
	if err != nil {
		klog.FromContext(ctx).Error(err, "Cannot make the delegate again", "pod", klog.KObj(pod), "target", t.Ref.String())
		return false, nil
	}
	ch, err := proxypod.MakeChaperon(source, fresh, c.clusterName)
	if err != nil {
		return false, nil
	}
	if memo.deleted {
		ch.Spec.TopologySpreadConstraints = memo.spread
	}
	_, err = t.MCClient.MulticlusterV1alpha1().PodChaperons(pod.Namespace).Create(ctx, ch, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// There, and this informer has not shown it yet.
		return true, nil
	}
	if err != nil {
		c.recorder.Eventf(pod, corev1.EventTypeWarning, ReasonDelegateLost, "cannot make the delegate of this pod in %s again: %v", t.Ref.Name, err)
		return true, fmt.Errorf("making the delegate of %s/%s again: %w", pod.Namespace, pod.Name, err)
	}
	klog.FromContext(ctx).Info("Delegate made again", "pod", klog.KObj(pod), "target", t.Ref.String())
	c.recorder.Eventf(pod, corev1.EventTypeNormal, ReasonDelegateRecreated,
		"the delegate of this pod in %s was deleted before it finished: made again (%s/%s)", t.Ref.Name, ch.Namespace, ch.Name)
	return true, nil
}

// feedback copies the delegate's status, as mirrored on its chaperon, to
// the proxy.
func (c *Controller) feedback(ctx context.Context, pod *corev1.Pod, ch *v1alpha1.PodChaperon) error {
	want := Status(pod, ch)
	if apiequality.Semantic.DeepEqual(want, pod.Status) {
		return nil
	}
	patch, err := StatusPatch(pod, want)
	if err != nil {
		return err
	}
	_, err = c.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		// The informer brings the newer proxy; this key comes again.
		return nil
	}
	if err != nil {
		c.recorder.Eventf(pod, corev1.EventTypeWarning, ReasonFeedbackFailed, "cannot update the proxy's status: %v", err)
	}
	return err
}

// StatusPatch is the strategic merge patch of pods/status that turns the
// cached proxy's status into want, conditioned on the cached
// resourceVersion: a proxy changed since fails with a Conflict, as an update
// would, and is looked at again when the informer brings it. A patch lets
// the proxies' cache go without what a full update would send back: the
// spec and the original manifest (see TrimProxy in delegator/app).
func StatusPatch(pod *corev1.Pod, want corev1.PodStatus) ([]byte, error) {
	old, err := json.Marshal(corev1.Pod{Status: pod.Status})
	if err != nil {
		return nil, err
	}
	updated, err := json.Marshal(corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: pod.ResourceVersion}, Status: want})
	if err != nil {
		return nil, err
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(old, updated, &corev1.Pod{})
	if err != nil {
		return nil, fmt.Errorf("status patch of proxy %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return patch, nil
}

// Status is the proxy's status given its delegate's, as mirrored on the
// chaperon: phase, conditions, container states and IPs come from the
// delegate; the proxy keeps its QoS class and its own PodScheduled
// condition (it is scheduled, to its virtual node).
func Status(pod *corev1.Pod, ch *v1alpha1.PodChaperon) corev1.PodStatus {
	s := *ch.Status.PodStatus.DeepCopy()
	s.QOSClass = pod.Status.QOSClass
	var conditions []corev1.PodCondition
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodScheduled {
			conditions = append(conditions, cond)
		}
	}
	for _, cond := range s.Conditions {
		if cond.Type != corev1.PodScheduled {
			conditions = append(conditions, cond)
		}
	}
	s.Conditions = conditions
	if s.Phase == "" {
		s.Phase = corev1.PodPending
	}
	return s
}
