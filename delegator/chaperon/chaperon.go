// Package chaperon is the target side of the delegate lifecycle: for each
// PodChaperon that a source sends to this cluster, it makes the delegate
// pod (same namespace, name, labels and annotations, the chaperon's spec,
// owned by the chaperon so that deleting the chaperon deletes the pod) and
// mirrors the pod's status into the chaperon's, where the source reads
// whether the target's scheduler placed it and how it runs. A delegate
// deleted before it finished is made again and scheduled anew; a finished
// one is never run again. A delegate that the API server refuses is
// reported on the chaperon as a refusal, with the error.
package chaperon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/delegator/controller"
	"admiralty.io/multicluster-scheduler/delegator/follow"
)

// Event reasons on PodChaperons.
const (
	// ReasonDelegateRejected: the API server refused the delegate pod.
	ReasonDelegateRejected = "DelegateRejected"
	// ReasonDelegateRecreated: the delegate was deleted before it finished
	// and is made again.
	ReasonDelegateRecreated = "DelegateRecreated"
	// ReasonSpecChangeIgnored: the chaperon's spec changed after its
	// delegate was made; a pod's spec cannot follow.
	ReasonSpecChangeIgnored = "SpecChangeIgnored"
	// ReasonWaitingForDependencies: the delegate waits for the copies of
	// the config maps and secrets it uses.
	ReasonWaitingForDependencies = follow.ReasonWaitingForDependencies
)

// Controller makes delegates from chaperons.
type Controller struct {
	client   kubernetes.Interface
	mcClient versioned.Interface
	recorder record.EventRecorder
	// chaperons is the chaperon informer's cache, seen through the
	// chaperons this controller wrote (Mutation) until the cache shows
	// them: without it, a delegate's next event found the chaperon as it
	// was before the controller's last status write, which was then
	// written again over a stale resourceVersion (a conflict).
	chaperons  cache.MutationCache
	pods       corelisters.PodLister
	podFactory informers.SharedInformerFactory
	controller *controller.Controller
	// gate, if not nil, holds a delegate back until the copies of its
	// config maps and secrets are there.
	gate *follow.Gate
	// clock times the holds of verdictHold and firstMirrorDelay.
	clock clock.PassiveClock

	mu sync.Mutex
	// memos, by chaperon key, is what the caches may no longer show.
	memos map[string]*memo
}

// memo is remembered about one chaperon.
type memo struct {
	chaperonUID types.UID
	// finished is the final status of a delegate that reached a terminal
	// phase on its own (not because it was being deleted): it is never run
	// again, even if it is deleted before its chaperon shows that phase.
	finished     *corev1.PodStatus
	finishedNode string
	// warnedHash is the spec hash last warned about, so that a changed spec
	// makes one Event, not one per status change.
	warnedHash string
	// boundSeen is when this controller first saw the delegate bound and
	// not started, while the chaperon did not say where: the verdict waits
	// verdictHold from then (see holdVerdict).
	boundSeen time.Time
}

// NewController is the delegator's factory of the chaperon controller.
func NewController(_ context.Context, d *app.Delegator) (app.Controller, error) {
	// Delegates only (d.Delegates): a target runs many other pods.
	pods := d.Delegates.Core().V1().Pods().Informer()
	chaperons := d.MCInformers.Multicluster().V1alpha1().PodChaperons().Informer()
	c := New(d.Client, d.MCClient, d.Recorder, chaperons, pods, nil, d.Options.Workers)
	c.SetGate(follow.NewGate(d.Options.ClusterName, d.Client, d.MCClient, chaperons))
	return c, nil
}

// SetGate makes delegates wait for their dependencies; call it before
// Start.
func (c *Controller) SetGate(g *follow.Gate) {
	c.gate = g
	g.Notify(c.controller.EnqueueKey)
	c.controller.WaitFor(g.HasSynced)
}

// New returns the controller. podInformer must hold the delegates (pods
// labeled LabelParentClusterName), at least; podFactory, if not nil, is
// started and stopped with the controller.
func New(client kubernetes.Interface, mcClient versioned.Interface, recorder record.EventRecorder,
	chaperonInformer, podInformer cache.SharedIndexInformer, podFactory informers.SharedInformerFactory, workers int) *Controller {
	c := &Controller{
		client:     client,
		mcClient:   mcClient,
		recorder:   recorder,
		chaperons:  newChaperonCache(chaperonInformer.GetStore()),
		pods:       corelisters.NewPodLister(podInformer.GetIndexer()),
		podFactory: podFactory,
		memos:      map[string]*memo{},
		clock:      clock.RealClock{},
	}
	c.controller = controller.New("chaperon", workers, c.reconcile)
	_, _ = chaperonInformer.AddEventHandler(c.controller.Handler())
	// The cache's copy catching up with ours drops ours.
	_, _ = chaperonInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { onChaperon(obj, c.chaperons.OnAddOrUpdate) },
		UpdateFunc: func(_, obj any) { onChaperon(obj, c.chaperons.OnAddOrUpdate) },
		DeleteFunc: func(obj any) { onChaperon(controller.Object(obj), c.chaperons.OnDelete) },
	})
	_, _ = podInformer.AddEventHandler(c.controller.MappedHandler(func(obj any) []string {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return nil
		}
		if owner := controllerOf(pod); owner != nil {
			return []string{pod.Namespace + "/" + owner.Name}
		}
		// A labeled pod that no chaperon controls blocks the chaperon of
		// its name, if any, until it goes.
		return []string{pod.Namespace + "/" + pod.Name}
	}))
	// A delegate that finished and was deleted soon after may be gone from
	// the cache before its chaperon showed its final phase: watch events
	// come in order, so remember it as it finishes.
	remember := func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok && Finished(pod) {
			if owner := controllerOf(pod); owner != nil {
				c.memo(pod.Namespace+"/"+owner.Name, owner.UID, func(m *memo) {
					m.finished = pod.Status.DeepCopy()
					m.finishedNode = pod.Spec.NodeName
				})
			}
		}
	}
	_, _ = podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    remember,
		UpdateFunc: func(_, obj any) { remember(obj) },
	})
	c.controller.WaitFor(chaperonInformer.HasSynced, podInformer.HasSynced)
	return c
}

// Name of the control loop.
func (c *Controller) Name() string { return c.controller.Name() }

// Start runs until ctx is done.
func (c *Controller) Start(ctx context.Context) error {
	if c.podFactory != nil {
		c.podFactory.Start(ctx.Done())
		defer c.podFactory.Shutdown()
	}
	if c.gate != nil {
		gateDone := make(chan struct{})
		go func() {
			defer close(gateDone)
			if err := c.gate.Start(ctx); err != nil && ctx.Err() == nil {
				klog.FromContext(ctx).Error(err, "Follow garbage collector stopped")
			}
		}()
		defer func() { <-gateDone }()
	}
	return c.controller.Start(ctx)
}

func (c *Controller) reconcile(ctx context.Context, key string) (controller.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controller.Result{}, nil
	}
	ch, exists, err := c.chaperon(key)
	if err != nil {
		return controller.Result{}, err
	}
	if !exists {
		// The garbage collector deletes the delegate.
		c.forget(key, "")
		return controller.Result{}, nil
	}
	if ch.DeletionTimestamp != nil {
		return controller.Result{}, nil
	}
	c.forget(key, ch.UID)

	pod, err := c.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return controller.Result{}, c.delegateMissing(ctx, key, ch)
	}
	if err != nil {
		return controller.Result{}, err
	}
	wait, err := c.delegateExists(ctx, key, ch, pod)
	return controller.Result{RequeueAfter: wait}, err
}

// verdictHold: a delegate seen bound and not started while its chaperon
// does not say where it is (the source's verdict, status.nodeName) has the
// verdict written once it starts or once this has passed since it was
// first seen bound, whichever comes first. A delegate that starts within
// it costs the chaperon one status write (its node, PodScheduled and
// Running at once) instead of two, and every watcher of chaperons one
// watch event less; one that does not is told to the source this much
// later. Under make bench's load three delegates in four start within it.
var verdictHold = 300 * time.Millisecond

// firstMirrorDelay: once the verdict is written, a delegate bound less
// than this long ago and not started yet has its next status mirrored only
// once this has passed (or it started): a delegate that starts within it
// costs one status write more, not two. 5 s is the pod startup SLO's
// bound, after which a still-Pending delegate's status (ContainerCreating,
// ErrImagePull...) is worth showing on the proxy.
var firstMirrorDelay = 5 * time.Second

// holdVerdict returns how much longer the verdict on the chaperon of key
// and uid waits for its just-bound delegate to start (see verdictHold).
func (c *Controller) holdVerdict(key string, uid types.UID) time.Duration {
	now := c.clock.Now()
	var seen time.Time
	c.memo(key, uid, func(m *memo) {
		if m.boundSeen.IsZero() {
			m.boundSeen = now
		}
		seen = m.boundSeen
	})
	return verdictHold - now.Sub(seen)
}

// verdictWritten forgets the hold of the chaperon of key and uid, and its
// memo if that leaves nothing remembered.
func (c *Controller) verdictWritten(key string, uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.memos[key]
	if !ok || m.chaperonUID != uid {
		return
	}
	m.boundSeen = time.Time{}
	if *m == (memo{chaperonUID: uid}) {
		delete(c.memos, key)
	}
}

// boundSince is when the delegate's PodScheduled condition became True,
// if it did.
func boundSince(pod *corev1.Pod) (time.Time, bool) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time, true
		}
	}
	return time.Time{}, false
}

// forget drops what is remembered of a chaperon key, unless it is about
// the chaperon of UID keep.
func (c *Controller) forget(key string, keep types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.memos[key]; ok && m.chaperonUID != keep {
		delete(c.memos, key)
	}
}

// memo calls f with the memo of the chaperon key and UID, under the lock.
func (c *Controller) memo(key string, uid types.UID, f func(m *memo)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.memos[key]
	if !ok || m.chaperonUID != uid {
		m = &memo{chaperonUID: uid}
		c.memos[key] = m
	}
	f(m)
}

// mutationCacheSize bounds the chaperons written and not yet seen by the
// informer (each is dropped once seen): a burst of delegates bound at once
// writes one each, and an evicted one only costs the write it saved.
const mutationCacheSize = 1000

// newChaperonCache returns the chaperon informer's store seen through the
// chaperons the controller writes.
func newChaperonCache(store cache.Store) cache.MutationCache {
	return cache.NewIntegerResourceVersionMutationCacheWithOptions(klog.Background(), store,
		cache.MutationCacheOptions{TTL: time.Minute, MaxCacheSize: mutationCacheSize})
}

// chaperon returns the chaperon of key: the newer of the informer's copy
// and the one this controller last wrote; none if the informer has none.
func (c *Controller) chaperon(key string) (*v1alpha1.PodChaperon, bool, error) {
	obj, exists, err := c.chaperons.GetByKey(key)
	if err != nil || !exists {
		return nil, false, err
	}
	ch, ok := obj.(*v1alpha1.PodChaperon)
	return ch, ok, nil
}

// onChaperon calls f with obj if it is a chaperon.
func onChaperon(obj any, f func(runtime.Object)) {
	if ch, ok := obj.(*v1alpha1.PodChaperon); ok {
		f(ch)
	}
}

// controllerOf returns the PodChaperon that controls pod, if any.
func controllerOf(pod *corev1.Pod) *metav1.OwnerReference {
	owner := metav1.GetControllerOf(pod)
	if owner == nil || owner.Kind != Kind.Kind || owner.APIVersion != Kind.GroupVersion().String() {
		return nil
	}
	return owner
}

// delegateMissing makes the delegate, unless it finished.
func (c *Controller) delegateMissing(ctx context.Context, key string, ch *v1alpha1.PodChaperon) error {
	logger := klog.FromContext(ctx)
	c.mu.Lock()
	var finished *corev1.PodStatus
	var finishedNode string
	if m := c.memos[key]; m != nil && m.chaperonUID == ch.UID {
		finished, finishedNode = m.finished, m.finishedNode
	}
	c.mu.Unlock()
	if finished != nil {
		// Gone once finished: the chaperon keeps the final status.
		_, err := c.mirror(ctx, ch, *finished, finishedNode)
		return err
	}
	if IsTerminal(ch.Status.Phase) {
		// Finished before this process started (the chaperon never shows
		// the terminal phase of a delegate killed by its deletion).
		return nil
	}
	// A chaperon that only waited for its dependencies had no delegate.
	recreate := (ch.Status.Phase != "" || len(ch.Status.Conditions) > 0 || ch.Status.NodeName != "") && !follow.IsWaiting(ch.Status.PodStatus)
	if recreate {
		// A delegate existed. Our cache may lag behind a deletion of the
		// chaperon (the garbage collector then deleted the pod): ask the API
		// server before running the pod again.
		live, err := c.mcClient.MulticlusterV1alpha1().PodChaperons(ch.Namespace).Get(ctx, ch.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if live.UID != ch.UID || live.DeletionTimestamp != nil || IsTerminal(live.Status.Phase) {
			return nil
		}
	}
	if c.gate != nil {
		verdict, err := c.gate.Check(ctx, ch)
		if err != nil {
			return err
		}
		if verdict.Conflict != nil || verdict.Waiting != "" {
			logger.V(2).Info("Delegate held back", "chaperon", klog.KObj(ch), "conflict", verdict.Conflict, "waiting", verdict.Waiting)
		}
		if verdict.Conflict != nil {
			// Not this source's object: never the delegate's. Reported as
			// a refusal, so the source moves on; retried with backoff, in
			// case the object goes.
			if rerr := c.reject(ctx, ch, verdict.Conflict); rerr != nil {
				return rerr
			}
			return verdict.Conflict
		}
		if verdict.Waiting != "" {
			// The copies' events bring this key back.
			return c.waitForDependencies(ctx, ch, verdict.Reason, verdict.Waiting)
		}
	}
	pod := Delegate(ch)
	created, err := c.client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	switch {
	case err == nil:
		if recreate && !isRejected(ch) {
			c.recorder.Event(ch, corev1.EventTypeNormal, ReasonDelegateRecreated, "the delegate pod was deleted before it finished; made it again, to be scheduled anew")
			logger.Info("Recreated delegate", "pod", klog.KObj(created), "chaperon", klog.KObj(ch))
		} else {
			logger.V(2).Info("Created delegate", "pod", klog.KObj(created), "chaperon", klog.KObj(ch))
		}
		return nil
	case apierrors.IsAlreadyExists(err):
		// Our cache has not seen it yet, or a pod of that name is not ours.
		existing, getErr := c.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(getErr) {
			return err // deleted meanwhile: try again
		}
		if getErr != nil {
			return getErr
		}
		// The pod's own events bring this key back for its status.
		_, err := c.delegateExists(ctx, key, ch, existing)
		return err
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		// The namespace controller deletes the delegate, then the chaperon:
		// nothing to report, its deletion ends this.
		logger.V(2).Info("Not making a delegate in a terminating namespace", "chaperon", klog.KObj(ch))
		return nil
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		// The spec itself is wrong: nothing changes until the chaperon
		// does, and its update brings it back here.
		return c.reject(ctx, ch, err)
	case apierrors.IsForbidden(err):
		// Admission (quota, a missing service account or priority class, a
		// policy) may change its mind: report, and retry with backoff.
		if rerr := c.reject(ctx, ch, err); rerr != nil {
			return rerr
		}
		return fmt.Errorf("creating delegate %s/%s: %w", pod.Namespace, pod.Name, err)
	default:
		// Transient (timeouts, throttling, a webhook down): retry with
		// backoff, without telling the source anything yet.
		return fmt.Errorf("creating delegate %s/%s: %w", pod.Namespace, pod.Name, err)
	}
}

// waitForDependencies says on the chaperon, once, what its delegate waits
// for.
func (c *Controller) waitForDependencies(ctx context.Context, ch *v1alpha1.PodChaperon, reason, message string) error {
	wrote, err := c.mirror(ctx, ch, follow.WaitingStatus(ch.Status.PodStatus, reason, message, metav1.Now()), "")
	if wrote {
		klog.FromContext(ctx).V(2).Info("Delegate waits for its dependencies", "chaperon", klog.KObj(ch), "message", message)
		c.recorder.Event(ch, corev1.EventTypeNormal, reason, message)
	}
	return err
}

// delegateExists checks that pod is the chaperon's delegate, then reports
// its node and status on the chaperon; a positive wait asks to come back
// then.
func (c *Controller) delegateExists(ctx context.Context, key string, ch *v1alpha1.PodChaperon, pod *corev1.Pod) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	owner := controllerOf(pod)
	switch {
	case owner == nil:
		err := apierrors.NewAlreadyExists(corev1.Resource("pods"), pod.Name)
		if rerr := c.reject(ctx, ch, fmt.Errorf("%w, and is not controlled by this PodChaperon", err)); rerr != nil {
			return 0, rerr
		}
		// The other pod may go, unseen by the delegates' watch: retry with
		// backoff.
		return 0, fmt.Errorf("pod %s/%s exists and is not a delegate", pod.Namespace, pod.Name)
	case owner.UID != ch.UID:
		// The delegate of an earlier chaperon of the same name: the garbage
		// collector would delete it; doing it now makes room sooner. Its
		// deletion brings this key back.
		uid := pod.UID
		err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return 0, err
		}
		logger.V(2).Info("Deleted the delegate of an earlier chaperon", "pod", klog.KObj(pod), "chaperon", klog.KObj(ch))
		return 0, nil
	}

	if h, ok := pod.Annotations[AnnotationSpecHash]; ok && h != SpecHash(&ch.Spec) {
		c.warnSpecChanged(ctx, key, ch, pod)
	}
	if pod.DeletionTimestamp != nil && IsTerminal(pod.Status.Phase) {
		// Killed because it is being deleted (a kubelet makes such a pod
		// Failed or Succeeded): not finished, and made again once gone.
		// The source must not see a terminal phase its proxy could never
		// leave.
		return 0, nil
	}
	node := pod.Spec.NodeName
	if node != "" && node != ch.Status.NodeName {
		// Bound, and the chaperon does not say where: the source's
		// verdict, written with the status. A delegate that has not
		// started yet is given verdictHold to start, so that one write
		// tells both.
		if JustBound(pod.Status) {
			if wait := c.holdVerdict(key, ch.UID); wait > 0 {
				return wait, nil
			}
		}
		wrote, err := c.mirror(ctx, ch, pod.Status, node)
		if wrote {
			c.verdictWritten(key, ch.UID)
		}
		return 0, err
	}
	if Unreported(ch.Status.PodStatus) && Unreported(pod.Status) {
		// A new delegate, not yet scheduled: nothing to tell.
		return 0, nil
	}
	if node != "" && JustBound(ch.Status.PodStatus) && pod.Status.Phase == corev1.PodPending {
		// The source has its verdict, the delegate has not started: most
		// start within a few seconds; wait for that, then mirror once.
		if since, ok := boundSince(pod); ok {
			if wait := firstMirrorDelay - c.clock.Since(since); wait > 0 {
				return wait, nil
			}
		}
	}
	_, err := c.mirror(ctx, ch, pod.Status, node)
	return 0, err
}

// mirror writes status and node on the chaperon, if it shows something
// else, and says whether it did.
func (c *Controller) mirror(ctx context.Context, ch *v1alpha1.PodChaperon, status corev1.PodStatus, node string) (bool, error) {
	if ch.Status.NodeName == node && StatusEqual(ch.Status.PodStatus, status) {
		return false, nil
	}
	updated := ch.DeepCopy()
	updated.Status = v1alpha1.PodChaperonStatus{PodStatus: *status.DeepCopy(), NodeName: node}
	written, err := c.mcClient.MulticlusterV1alpha1().PodChaperons(ch.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		// The informer brings the newer chaperon, and this key again.
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mirroring the delegate's status on chaperon %s/%s: %w", ch.Namespace, ch.Name, err)
	}
	c.chaperons.Mutation(written)
	klog.FromContext(ctx).V(4).Info("Mirrored delegate status", "chaperon", klog.KObj(ch), "phase", status.Phase, "node", node)
	return true, nil
}

// reject reports on the chaperon that its delegate cannot be created, once
// per distinct error: the status, then an Event.
func (c *Controller) reject(ctx context.Context, ch *v1alpha1.PodChaperon, cause error) error {
	wrote, err := c.mirror(ctx, ch, RejectedStatus(ch.Status.PodStatus, cause, metav1.Now()), "")
	if !wrote {
		return err
	}
	klog.FromContext(ctx).Info("Delegate rejected", "chaperon", klog.KObj(ch), "err", cause.Error())
	c.recorder.Eventf(ch, corev1.EventTypeWarning, ReasonDelegateRejected, "the delegate pod cannot be created: %v", cause)
	return nil
}

func isRejected(ch *v1alpha1.PodChaperon) bool {
	for _, c := range ch.Status.Conditions {
		if c.Type == corev1.PodScheduled && strings.HasPrefix(c.Message, rejectedPrefix) {
			return true
		}
	}
	return false
}

func (c *Controller) warnSpecChanged(ctx context.Context, key string, ch *v1alpha1.PodChaperon, pod *corev1.Pod) {
	h := SpecHash(&ch.Spec)
	var already bool
	c.memo(key, ch.UID, func(m *memo) {
		already = m.warnedHash == h
		m.warnedHash = h
	})
	if already {
		return
	}
	klog.FromContext(ctx).Info("Chaperon spec changed; the running delegate keeps its own", "chaperon", klog.KObj(ch), "pod", klog.KObj(pod))
	c.recorder.Event(ch, corev1.EventTypeWarning, ReasonSpecChangeIgnored,
		"the spec changed after the delegate pod was made; a pod's spec cannot change, so the delegate keeps the spec it was made with (delete the chaperon to apply a new one)")
}
