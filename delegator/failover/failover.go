// Package failover deletes the proxies of a target that stopped answering,
// once its grace period is over, so that their controllers recreate them in
// the targets that answer.
//
// While a target does not answer, its virtual node is NotReady
// (delegator/virtualnode) and tainted unreachable by the node lifecycle
// controller: no new proxy goes there, and the proxies already there stay
// (they tolerate the taint forever, see proxypod.OutageTolerations), since
// their delegates may well still run. Once the node has been NotReady for
// the Target's spec.unreachableGracePeriodSeconds (else the delegator's
// --unreachable-grace-period), and this delegator itself has seen the
// target fail (so that a delegator that restarts after a long stop does not
// act on a stale NotReady), the proxies on the node that a controller owns
// are deleted at once (grace period 0: nothing in this cluster runs them).
// Proxies without a controller are kept, with an Event: nothing would make
// them again. When the target answers again, the feedback controller
// deletes there the chaperons (hence delegates) whose proxy is gone.
//
// The timing comes from the node's Ready condition (its last transition),
// which is API state: a restarted or new leader resumes the countdown.
package failover

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	mclisters "admiralty.io/multicluster-scheduler/apis/generated/listers/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/delegator/controller"
	"admiralty.io/multicluster-scheduler/delegator/virtualnode"
	"admiralty.io/multicluster-scheduler/targets"
)

// Event reasons on proxy pods.
const (
	// ReasonTargetUnreachable: the proxy is deleted so that its controller
	// recreates it elsewhere.
	ReasonTargetUnreachable = "TargetUnreachable"
	// ReasonKeptWithoutController: the proxy would be deleted, but nothing
	// would recreate it.
	ReasonKeptWithoutController = "KeptWithoutController"
)

// Controller deletes the proxies of unreachable targets.
type Controller struct {
	client       kubernetes.Interface
	recorder     record.EventRecorder
	registry     *targets.Registry
	nodes        corelisters.NodeLister
	targets      mclisters.TargetLister
	clusters     mclisters.ClusterTargetLister
	defaultGrace time.Duration
	controller   *controller.Controller
	clock        clock.PassiveClock

	mu sync.Mutex
	// kept: the proxies told they are kept, by node; forgotten when they
	// are deleted or their node is Ready again.
	kept map[string]map[types.UID]struct{}
}

// NewController is the delegator's factory of the failover controller.
func NewController(_ context.Context, d *app.Delegator) (app.Controller, error) {
	nodes := d.KubeInformers.Core().V1().Nodes()
	ti := d.MCInformers.Multicluster().V1alpha1().Targets()
	ci := d.MCInformers.Multicluster().V1alpha1().ClusterTargets()
	c := New(d.Client, d.Recorder, d.Targets, nodes.Informer(), ti.Lister(), ci.Lister(), d.Options.UnreachableGracePeriod)
	_, _ = d.Proxies.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: c.proxyDeleted})
	c.controller.WaitFor(ti.Informer().HasSynced, ci.Informer().HasSynced)
	// A changed grace period applies at once.
	for _, inf := range []cache.SharedIndexInformer{ti.Informer(), ci.Informer()} {
		_, _ = inf.AddEventHandler(c.controller.MappedHandler(targets.VirtualNodeKeys))
	}
	return c, nil
}

// New returns the controller, keyed by virtual node name.
func New(client kubernetes.Interface, recorder record.EventRecorder, registry *targets.Registry, nodeInformer cache.SharedIndexInformer,
	targetLister mclisters.TargetLister, clusterLister mclisters.ClusterTargetLister, defaultGrace time.Duration) *Controller {
	c := &Controller{
		client:       client,
		recorder:     recorder,
		registry:     registry,
		nodes:        corelisters.NewNodeLister(nodeInformer.GetIndexer()),
		targets:      targetLister,
		clusters:     clusterLister,
		defaultGrace: defaultGrace,
		kept:         map[string]map[types.UID]struct{}{},
		clock:        clock.RealClock{},
	}
	c.controller = controller.New("failover", 1, c.reconcile)
	_, _ = nodeInformer.AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: virtualnode.Filter,
		Handler:    c.controller.Handler(),
	})
	c.controller.WaitFor(nodeInformer.HasSynced)
	// This process seeing a target fail (or answer again) counts too.
	registry.OnHealthChange(func(t *targets.Target) {
		c.controller.EnqueueKey(t.Ref.VirtualNodeName())
	})
	return c
}

// Name of the control loop.
func (c *Controller) Name() string { return c.controller.Name() }

// Start runs until ctx is done.
func (c *Controller) Start(ctx context.Context) error { return c.controller.Start(ctx) }

// NotReadySince returns when node's Ready condition stopped being True, or
// false if it is True (or absent: a node being registered).
func NotReadySince(node *corev1.Node) (time.Time, bool) {
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status == corev1.ConditionTrue {
				return time.Time{}, false
			}
			return cond.LastTransitionTime.Time, true
		}
	}
	return time.Time{}, false
}

// GracePeriod of a target: its spec's, else def.
func GracePeriod(spec *int64, def time.Duration) time.Duration {
	if spec != nil && *spec >= 0 {
		return time.Duration(*spec) * time.Second
	}
	return def
}

// grace returns the grace period of the target behind node name, and
// false if no Target stands behind it.
func (c *Controller) grace(name string) (time.Duration, targets.Ref, bool) {
	if list, err := c.targets.List(everything()); err == nil {
		for _, t := range list {
			ref := targets.Ref{Namespace: t.Namespace, Name: t.Name}
			if ref.VirtualNodeName() == name {
				return GracePeriod(t.Spec.UnreachableGracePeriodSeconds, c.defaultGrace), ref, true
			}
		}
	}
	if list, err := c.clusters.List(everything()); err == nil {
		for _, t := range list {
			ref := targets.Ref{Name: t.Name}
			if ref.VirtualNodeName() == name {
				return GracePeriod(t.Spec.UnreachableGracePeriodSeconds, c.defaultGrace), ref, true
			}
		}
	}
	return 0, targets.Ref{}, false
}

func (c *Controller) reconcile(ctx context.Context, name string) (controller.Result, error) {
	node, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		c.forgetNode(name)
		return controller.Result{}, nil
	}
	if err != nil {
		return controller.Result{}, err
	}
	since, notReady := NotReadySince(node)
	if !notReady {
		c.forgetNode(name)
		return controller.Result{}, nil
	}
	grace, ref, ok := c.grace(name)
	if !ok {
		return controller.Result{}, nil
	}
	// Only a target this process holds and saw fail: a node NotReady
	// because no delegator ran says nothing of the target.
	t := c.registry.Get(ref)
	if t == nil || !t.Unreachable() {
		return controller.Result{}, nil
	}
	if wait := since.Add(grace).Sub(c.clock.Now()); wait > 0 {
		return controller.Result{RequeueAfter: wait}, nil
	}
	return controller.Result{}, c.failover(ctx, node, t, grace)
}

// failover deletes the controlled proxies bound to node.
func (c *Controller) failover(ctx context.Context, node *corev1.Node, t *targets.Target, grace time.Duration) error {
	logger := klog.FromContext(ctx)
	// One list per outage, not a watch of every proxy: this is rare.
	pods, err := c.client.CoreV1().Pods(t.Scope).List(ctx, metav1.ListOptions{
		LabelSelector: v1alpha1.LabelIsProxy + "=true",
		FieldSelector: "spec.nodeName=" + node.Name,
	})
	if err != nil {
		return err
	}
	cause := t.Health().Err
	deleted := 0
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if metav1.GetControllerOf(pod) == nil {
			c.mu.Lock()
			if c.kept[node.Name] == nil {
				c.kept[node.Name] = map[types.UID]struct{}{}
			}
			_, told := c.kept[node.Name][pod.UID]
			c.kept[node.Name][pod.UID] = struct{}{}
			c.mu.Unlock()
			if !told {
				c.recorder.Eventf(pod, corev1.EventTypeWarning, ReasonKeptWithoutController,
					"target %s has not answered for %s (%v); this pod has no controller to recreate it elsewhere, so it is kept", t.Ref.String(), grace, cause)
			}
			continue
		}
		c.recorder.Eventf(pod, corev1.EventTypeWarning, ReasonTargetUnreachable,
			"target %s has not answered for %s (%v); deleting the proxy so that its controller recreates it in another target", t.Ref.String(), grace, cause)
		zero := int64(0)
		uid := pod.UID
		err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &uid},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("deleting proxy %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		deleted++
	}
	if deleted > 0 {
		logger.Info("Deleted the proxies of an unreachable target", "target", t.Ref.String(), "node", node.Name, "proxies", deleted, "gracePeriod", grace)
	}
	return nil
}

// proxyDeleted forgets a deleted proxy.
func (c *Controller) proxyDeleted(obj any) {
	pod, ok := controller.Object(obj).(*corev1.Pod)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if kept := c.kept[pod.Spec.NodeName]; kept != nil {
		delete(kept, pod.UID)
		if len(kept) == 0 {
			delete(c.kept, pod.Spec.NodeName)
		}
	}
}

// forgetNode forgets the proxies kept on a node that is Ready again (or
// gone): one deleted between failover's list and its note is dropped here.
// An outage to come tells the others again.
func (c *Controller) forgetNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.kept, name)
}

func everything() labels.Selector { return labels.Everything() }
