// Package clustersummary publishes this cluster's ClusterSummary: one
// cluster-scoped object, named after the cluster, that tells sources what
// their schedulers need to simulate a pod here (per node: labels, taints,
// readiness, allocatable and requested resources, pod count, host ports in
// use; and the capacity and allocatable resources summed over Ready nodes)
// without the right to list this cluster's nodes and pods.
//
// It is driven by node and pod watches and coalesced: at most one
// computation, hence one write, per interval, and no write at all when the
// summary did not change.
package clustersummary

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	mclisters "admiralty.io/multicluster-scheduler/apis/generated/listers/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/delegator/controller"
)

// BoundPodsSelector selects the pods that count: bound to a node and not
// terminal. Pending pods, which can be many in a busy cluster, never reach
// the cache; a pod enters the watch when it is bound and leaves it when it
// finishes, as the scheduler's own pod informer sees them.
var BoundPodsSelector = fields.AndSelectors(
	fields.OneTermNotEqualSelector("spec.nodeName", ""),
	fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
	fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)),
).String()

// Controller maintains the ClusterSummary.
type Controller struct {
	name       string
	interval   time.Duration
	client     versioned.Interface
	nodes      corelisters.NodeLister
	pods       cache.Store
	summaries  mclisters.ClusterSummaryLister
	podFactory informers.SharedInformerFactory
	controller *controller.Controller

	mu sync.Mutex
	// lastRun is when the summary was last computed; the next computation
	// waits until lastRun+interval.
	lastRun time.Time
	// written is the resourceVersion of our last write, so that its own
	// watch event does not trigger another computation.
	written string
}

// NewController is the delegator's factory of the ClusterSummary
// controller.
func NewController(_ context.Context, d *app.Delegator) (app.Controller, error) {
	podFactory := informers.NewSharedInformerFactoryWithOptions(d.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = BoundPodsSelector }))
	pods := podFactory.Core().V1().Pods()
	// Nodes are shared with the virtual node controller (virtual nodes are
	// filtered here); summaries with whoever else reads them.
	nodes := d.KubeInformers.Core().V1().Nodes()
	summaries := d.MCInformers.Multicluster().V1alpha1().ClusterSummaries()
	return New(d.Options.ClusterName, d.Options.ClusterSummaryInterval, d.MCClient,
		nodes.Informer(), pods.Informer(), summaries.Informer(), podFactory)
}

// New returns the controller of the summary named name. podInformer must
// watch the bound, non-terminal pods (BoundPodsSelector) and not be started
// yet: New sets its transform, so that its cache holds what each pod uses
// (a cluster's pods are the largest cache the delegator holds). podFactory,
// if not nil, is started and stopped with the controller.
func New(name string, interval time.Duration, client versioned.Interface,
	nodeInformer, podInformer, summaryInformer cache.SharedIndexInformer, podFactory informers.SharedInformerFactory) (*Controller, error) {
	if err := podInformer.SetTransform(usageOf); err != nil {
		return nil, err
	}
	c := &Controller{
		name:       name,
		interval:   interval,
		client:     client,
		nodes:      corelisters.NewNodeLister(nodeInformer.GetIndexer()),
		pods:       podInformer.GetStore(),
		summaries:  mclisters.NewClusterSummaryLister(summaryInformer.GetIndexer()),
		podFactory: podFactory,
	}
	c.controller = controller.New("clustersummary", 1, c.reconcile)
	_, _ = nodeInformer.AddEventHandler(c.handler(func(old, cur any) bool {
		o, ok1 := old.(*corev1.Node)
		n, ok2 := cur.(*corev1.Node)
		if !ok1 || !ok2 {
			return true
		}
		if v1alpha1.IsVirtualNode(o) && v1alpha1.IsVirtualNode(n) {
			return false
		}
		// Heartbeats change only the conditions' times: no new summary.
		return !apiequality.Semantic.DeepEqual(nodeSummary(o), nodeSummary(n)) ||
			!apiequality.Semantic.DeepEqual(o.Status.Capacity, n.Status.Capacity) ||
			v1alpha1.IsVirtualNode(o) != v1alpha1.IsVirtualNode(n)
	}, func(obj any) bool {
		n, ok := obj.(*corev1.Node)
		return !ok || !v1alpha1.IsVirtualNode(n)
	}))
	_, _ = podInformer.AddEventHandler(c.handler(func(old, cur any) bool {
		o, ok1 := old.(*Usage)
		p, ok2 := cur.(*Usage)
		// Container states and probes change often and count for nothing;
		// requests change with an in-place resize.
		return !ok1 || !ok2 || !sameUsage(o, p)
	}, nil))
	_, _ = summaryInformer.AddEventHandler(c.handler(nil, func(obj any) bool {
		s, ok := obj.(*v1alpha1.ClusterSummary)
		if !ok {
			return true
		}
		c.mu.Lock()
		ours := s.ResourceVersion == c.written
		c.mu.Unlock()
		// Someone else's edit or deletion is undone; our own write is not
		// news.
		return s.Name == c.name && !ours
	}))
	c.controller.WaitFor(nodeInformer.HasSynced, podInformer.HasSynced, summaryInformer.HasSynced)
	return c, nil
}

// Name of the control loop.
func (c *Controller) Name() string { return c.controller.Name() }

// Start runs until ctx is done.
func (c *Controller) Start(ctx context.Context) error {
	if c.podFactory != nil {
		c.podFactory.Start(ctx.Done())
		defer c.podFactory.Shutdown()
	}
	// A cluster without nodes or pods still gets its (empty) summary.
	c.controller.EnqueueKey(c.name)
	return c.controller.Start(ctx)
}

// handler triggers a computation on adds and deletes of objects that pass
// filter (nil: all), and on updates for which changed (nil: always) is true.
func (c *Controller) handler(changed func(old, cur any) bool, filter func(obj any) bool) cache.ResourceEventHandler {
	pass := func(obj any) bool {
		return filter == nil || filter(controller.Object(obj))
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if pass(obj) {
				c.trigger()
			}
		},
		UpdateFunc: func(old, cur any) {
			if (pass(old) || pass(cur)) && (changed == nil || changed(old, cur)) {
				c.trigger()
			}
		},
		DeleteFunc: func(obj any) {
			if pass(obj) {
				c.trigger()
			}
		},
	}
}

// trigger schedules a computation at the earliest lastRun+interval. The
// queue keeps the earliest of pending schedules and holds one key, so a
// burst of events makes a single computation.
func (c *Controller) trigger() {
	c.mu.Lock()
	wait := time.Until(c.lastRun.Add(c.interval))
	c.mu.Unlock()
	c.controller.EnqueueKeyAfter(c.name, wait)
}

func (c *Controller) reconcile(ctx context.Context, _ string) (controller.Result, error) {
	logger := klog.FromContext(ctx)
	c.mu.Lock()
	if wait := time.Until(c.lastRun.Add(c.interval)); wait > 0 {
		// An event raced with the previous computation.
		c.mu.Unlock()
		return controller.Result{RequeueAfter: wait}, nil
	}
	c.lastRun = time.Now()
	c.mu.Unlock()

	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return controller.Result{}, err
	}
	objs := c.pods.List()
	pods := make([]*Usage, 0, len(objs))
	for _, obj := range objs {
		if u, ok := obj.(*Usage); ok {
			pods = append(pods, u)
		}
	}
	want := Build(c.name, nodes, pods)
	cur, err := c.summaries.Get(c.name)
	switch {
	case apierrors.IsNotFound(err):
		created, err := c.client.MulticlusterV1alpha1().ClusterSummaries().Create(ctx, want, metav1.CreateOptions{})
		if err != nil {
			return controller.Result{}, fmt.Errorf("creating ClusterSummary %s: %w", c.name, err)
		}
		c.wrote(created)
		logger.V(2).Info("Created the cluster summary", "clusterSummary", klog.KObj(created), "nodes", len(created.Nodes))
		return controller.Result{}, nil
	case err != nil:
		return controller.Result{}, err
	case Equal(cur, want):
		return controller.Result{}, nil
	}
	updated := cur.DeepCopy()
	updated.Capacity, updated.Allocatable, updated.Nodes = want.Capacity, want.Allocatable, want.Nodes
	updated, err = c.client.MulticlusterV1alpha1().ClusterSummaries().Update(ctx, updated, metav1.UpdateOptions{})
	if err != nil {
		// A conflict means our cache is behind: the retry computes again
		// from a fresher one.
		return controller.Result{}, fmt.Errorf("updating ClusterSummary %s: %w", c.name, err)
	}
	c.wrote(updated)
	logger.V(4).Info("Updated the cluster summary", "clusterSummary", klog.KObj(updated), "nodes", len(updated.Nodes))
	return controller.Result{}, nil
}

func (c *Controller) wrote(s *v1alpha1.ClusterSummary) {
	c.mu.Lock()
	c.written = s.ResourceVersion
	c.mu.Unlock()
}

// usageOf is the pods' informer's transform: a pod becomes its Usage. What
// is not a pod (a Usage met again, as a resync requeues them) passes as it
// is.
func usageOf(obj any) (any, error) {
	if p, ok := obj.(*corev1.Pod); ok {
		return UsageOf(p), nil
	}
	return obj, nil
}
