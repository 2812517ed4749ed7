// Package virtualnode keeps one node per target in the source cluster, the
// node that proxy pods are scheduled to. virtual-kubelet's node package
// registers it, renews its Lease and updates its status; this package
// decides what the node says: the target's summed capacity and allocatable
// resources, the labels all of the target's schedulable nodes share (so
// that a node selector on a region selects a cluster), and Ready only while
// the target answers. A node whose Target is gone is deleted.
package virtualnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	mclisters "admiralty.io/multicluster-scheduler/apis/generated/listers/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/delegator/controller"
	"admiralty.io/multicluster-scheduler/names"
	"admiralty.io/multicluster-scheduler/targets"
)

// Labels and taint of every virtual node, as in the original project.
const (
	LabelType      = "type"
	TypeValue      = "virtual-kubelet"
	LabelRole      = "kubernetes.io/role"
	RoleValue      = "cluster"
	leaseNamespace = corev1.NamespaceNodeLease
)

// Taint keeps ordinary pods off virtual nodes; proxies tolerate it.
var Taint = corev1.Taint{Key: v1alpha1.LabelVirtualKubeletProvider, Value: v1alpha1.ProviderName, Effect: corev1.TaintEffectNoSchedule}

// Options of the controller.
type Options struct {
	// LeaseDurationSeconds of the virtual nodes' Leases; renewed every
	// quarter of it while the target answers.
	LeaseDurationSeconds int32
	// PingInterval is how often each target is checked.
	PingInterval time.Duration
	// KubeletPort is advertised as the nodes' kubelet endpoint (0: none).
	KubeletPort int32
	// KubeletAddress is advertised as the nodes' InternalIP.
	KubeletAddress string
}

// Controller runs the virtual nodes.
type Controller struct {
	opts       Options
	client     kubernetes.Interface
	registry   *targets.Registry
	nodes      corelisters.NodeLister
	targets    mclisters.TargetLister
	clusters   mclisters.ClusterTargetLister
	controller *controller.Controller

	mu      sync.Mutex
	running map[string]*runningNode // by node name
}

type runningNode struct {
	target   *targets.Target
	provider *provider
	cancel   context.CancelFunc
	done     chan struct{}
}

// New returns the controller. nodeInformer must be filtered to virtual
// nodes or not, as the caller likes; only nodes of the admiralty provider
// are ever deleted.
func New(opts Options, client kubernetes.Interface, registry *targets.Registry, nodeInformer cache.SharedIndexInformer,
	targetLister mclisters.TargetLister, clusterLister mclisters.ClusterTargetLister, synced ...cache.InformerSynced) *Controller {
	if opts.LeaseDurationSeconds == 0 {
		opts.LeaseDurationSeconds = 40
	}
	if opts.PingInterval == 0 {
		opts.PingInterval = 10 * time.Second
	}
	c := &Controller{
		opts:     opts,
		client:   client,
		registry: registry,
		nodes:    corelisters.NewNodeLister(nodeInformer.GetIndexer()),
		targets:  targetLister,
		clusters: clusterLister,
		running:  map[string]*runningNode{},
	}
	c.controller = controller.New("virtualnode", 2, c.reconcile)
	_, _ = nodeInformer.AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: Filter,
		Handler:    c.controller.Handler(),
	})
	c.controller.WaitFor(append(synced, nodeInformer.HasSynced)...)
	registry.Subscribe(c)
	return c
}

// WatchTargets enqueues the virtual node of every Target or ClusterTarget
// event: a Target that finishes deleting (its finalizer removed after the
// registry let it go) must take its node with it.
func (c *Controller) WatchTargets(informers ...cache.SharedIndexInformer) {
	for _, inf := range informers {
		_, _ = inf.AddEventHandler(c.controller.MappedHandler(targets.VirtualNodeKeys))
	}
}

// Name of the control loop.
func (c *Controller) Name() string { return c.controller.Name() }

// Start runs until ctx is done; virtual nodes stay registered (a restarted
// or standby delegator takes them over).
func (c *Controller) Start(ctx context.Context) error {
	// Targets and ClusterTargets that exist at start: their nodes are kept,
	// the others deleted (orphans of Targets deleted while no delegator ran).
	for _, ref := range c.wantedRefs() {
		c.controller.EnqueueKey(ref.VirtualNodeName())
	}
	err := c.controller.Start(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, r := range c.running {
		r.cancel()
		<-r.done
		delete(c.running, name)
	}
	return err
}

// Filter selects virtual nodes (and their tombstones) in a node informer's
// events.
func Filter(obj any) bool {
	n, ok := controller.Object(obj).(*corev1.Node)
	return ok && v1alpha1.IsVirtualNode(n)
}

// TargetAdded implements targets.Handler.
func (c *Controller) TargetAdded(t *targets.Target) {
	// The node follows the target's summary.
	_, _ = t.Summaries.Multicluster().V1alpha1().ClusterSummaries().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.refresh(t) },
		UpdateFunc: func(any, any) { c.refresh(t) },
		DeleteFunc: func(any) { c.refresh(t) },
	})
	c.controller.EnqueueKey(t.Ref.VirtualNodeName())
}

// TargetRemoved implements targets.Handler.
func (c *Controller) TargetRemoved(t *targets.Target) {
	c.controller.EnqueueKey(t.Ref.VirtualNodeName())
}

func (c *Controller) wantedRefs() []targets.Ref {
	var refs []targets.Ref
	// A Target being deleted wants no node any more.
	if list, err := c.targets.List(labels.Everything()); err == nil {
		for _, t := range list {
			if t.DeletionTimestamp == nil {
				refs = append(refs, targets.Ref{Namespace: t.Namespace, Name: t.Name})
			}
		}
	}
	if list, err := c.clusters.List(labels.Everything()); err == nil {
		for _, t := range list {
			if t.DeletionTimestamp == nil {
				refs = append(refs, targets.Ref{Name: t.Name})
			}
		}
	}
	return refs
}

func (c *Controller) reconcile(ctx context.Context, name string) (controller.Result, error) {
	logger := klog.FromContext(ctx)
	var ref *targets.Ref
	for _, r := range c.wantedRefs() {
		if r.VirtualNodeName() == name {
			ref = &r
			break
		}
	}
	if ref == nil {
		// No Target stands behind this node any more.
		c.stop(name)
		n, err := c.nodes.Get(name)
		if apierrors.IsNotFound(err) {
			return controller.Result{}, nil
		}
		if err != nil {
			return controller.Result{}, err
		}
		if n.Labels[v1alpha1.LabelVirtualKubeletProvider] != v1alpha1.ProviderName {
			return controller.Result{}, nil
		}
		logger.Info("Deleting virtual node of a deleted target", "node", name)
		if err := c.client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return controller.Result{}, err
		}
		err = c.client.CoordinationV1().Leases(leaseNamespace).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return controller.Result{}, err
		}
		return controller.Result{}, nil
	}

	t := c.registry.Get(*ref)
	c.mu.Lock()
	r, running := c.running[name]
	c.mu.Unlock()
	switch {
	case t == nil:
		// The Target exists but cannot be reached with its spec (its status
		// says why): the node's Lease is no longer renewed and the node
		// lifecycle controller marks it NotReady.
		c.stop(name)
	case running && r.target == t:
		if _, err := c.nodes.Get(name); apierrors.IsNotFound(err) {
			// Someone deleted the node: register it again.
			c.stop(name)
			c.start(ctx, t)
		}
	default:
		c.stop(name)
		c.start(ctx, t)
	}
	return controller.Result{}, nil
}

func (c *Controller) start(ctx context.Context, t *targets.Target) {
	logger := klog.FromContext(ctx).WithValues("node", t.Ref.VirtualNodeName(), "target", t.Ref.String())
	p := &provider{target: t, opts: c.opts, registry: c.registry, setReady: c.setReady}
	p.registered = p.node()
	nc, err := node.NewNodeController(p, p.registered, c.client.CoreV1().Nodes(),
		node.WithNodeEnableLeaseV1(c.client.CoordinationV1().Leases(leaseNamespace), c.opts.LeaseDurationSeconds),
		node.WithNodePingInterval(c.opts.PingInterval),
		node.WithNodePingTimeout(c.opts.PingInterval),
		node.WithNodeStatusUpdateErrorHandler(func(ctx context.Context, err error) error {
			if apierrors.IsNotFound(err) {
				// The node was deleted: the reconcile loop registers it again.
				c.controller.EnqueueKey(t.Ref.VirtualNodeName())
			}
			return err
		}),
	)
	if err != nil {
		logger.Error(err, "Cannot build the node controller")
		return
	}
	// ctx is the workers' context: the node runs until the controller stops.
	runCtx, cancel := context.WithCancel(klog.NewContext(ctx, logger))
	r := &runningNode{target: t, provider: p, cancel: cancel, done: make(chan struct{})}
	c.mu.Lock()
	c.running[t.Ref.VirtualNodeName()] = r
	c.mu.Unlock()
	go func() {
		defer close(r.done)
		logger.Info("Running virtual node")
		if err := nc.Run(runCtx); err != nil && runCtx.Err() == nil {
			logger.Error(err, "Virtual node stopped; retrying")
			c.controller.EnqueueKeyAfter(t.Ref.VirtualNodeName(), 5*time.Second)
			c.mu.Lock()
			if c.running[t.Ref.VirtualNodeName()] == r {
				delete(c.running, t.Ref.VirtualNodeName())
			}
			c.mu.Unlock()
		}
	}()
}

func (c *Controller) stop(name string) {
	c.mu.Lock()
	r, ok := c.running[name]
	delete(c.running, name)
	c.mu.Unlock()
	if ok {
		r.cancel()
		<-r.done
	}
}

// refresh pushes a new node status for target t, if its node runs.
func (c *Controller) refresh(t *targets.Target) {
	c.mu.Lock()
	r, ok := c.running[t.Ref.VirtualNodeName()]
	c.mu.Unlock()
	if ok && r.target == t {
		r.provider.notify()
	}
}

// Reasons of the virtual nodes' Ready condition.
const (
	ReasonTargetReachable   = "TargetReachable"
	ReasonTargetUnreachable = "TargetUnreachable"
)

// setReady writes the Ready condition of a virtual node at once, when its
// status changes: the node lifecycle controller would only see a lapsed
// Lease after its grace period (40 s and more), and virtual-kubelet writes
// nothing while pings fail. Ready=Unknown, as for a kubelet that stopped
// posting, makes the node lifecycle controller taint the node
// node.kubernetes.io/unreachable (NoSchedule and NoExecute).
func (c *Controller) setReady(ctx context.Context, name string, ready bool, message string) {
	status, reason := corev1.ConditionUnknown, ReasonTargetUnreachable
	if ready {
		status, reason = corev1.ConditionTrue, ReasonTargetReachable
	}
	if n, err := c.nodes.Get(name); err == nil {
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && (cond.Status == corev1.ConditionTrue) == ready {
				return
			}
		}
	}
	now := metav1.Now()
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: status, Reason: reason, Message: message,
		LastHeartbeatTime: now, LastTransitionTime: now,
	}}}})
	if err != nil {
		return
	}
	logger := klog.FromContext(ctx)
	_, err = c.client.CoreV1().Nodes().PatchStatus(ctx, name, patch)
	if err != nil && !apierrors.IsNotFound(err) {
		logger.Error(err, "Cannot update the virtual node's Ready condition", "node", name)
		return
	}
	logger.Info("Virtual node readiness", "node", name, "ready", status, "message", message)
}

// provider is virtual-kubelet's NodeProvider for one target.
type provider struct {
	target   *targets.Target
	opts     Options
	registry *targets.Registry
	setReady func(ctx context.Context, name string, ready bool, message string)

	// registered is the node given to virtual-kubelet when it started.
	registered *corev1.Node

	mu   sync.Mutex
	wake chan struct{} // set by NotifyNodeStatus: a status update is due
}

// Ping implements node.NodeProvider: the node is renewed only while the
// target answers and authorizes this source.
// Each result feeds the registry (the Target's Ready condition, failover)
// and the node's Ready condition.
func (p *provider) Ping(ctx context.Context) error {
	err := targets.Check(ctx, p.target)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		// The node is stopping (its target replaced or removed): the check
		// was cut short, which says nothing of the target.
		return err
	}
	p.registry.ReportHealth(p.target, err)
	// A target that does not answer uses up the ping's deadline: the
	// node's condition is written with a deadline of its own, to the
	// source's API server.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), targets.RequestTimeout)
	defer cancel()
	if err != nil {
		p.setReady(ctx, p.target.Ref.VirtualNodeName(), false, fmt.Sprintf("target %s does not answer: %v", p.target.Ref.String(), err))
	} else {
		p.setReady(ctx, p.target.Ref.VirtualNodeName(), true, fmt.Sprintf("target %s answers", p.target.Ref.String()))
	}
	return err
}

// NotifyNodeStatus implements node.NodeProvider. virtual-kubelet's
// callback sends on a channel that its node loop drains; it blocks while
// the loop is busy and forever once the loop stopped. So the callback is
// called from a goroutine of this node's run only, never from the
// informer handlers that call notify: a blocked handler would keep the
// target's informers from shutting down, and with them the registry that
// removes the target (every Target of the cluster stalled).
func (p *provider) NotifyNodeStatus(ctx context.Context, cb func(*corev1.Node)) {
	// A summary that arrived between the node's start and now found no
	// wake channel: look once at start.
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	p.mu.Lock()
	p.wake = wake
	p.mu.Unlock()
	go func() {
		// The node last given to virtual-kubelet in this run: a summary
		// changes with every pod that starts or ends in the target (its
		// nodes' requests and pod counts), the virtual node only with the
		// target's labels and resources. An unchanged node is not given
		// again, since each one given is a status write (new heartbeat
		// times) that every watcher of nodes receives; virtual-kubelet's
		// own status updates keep the heartbeat.
		given := p.registered
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
				if ctx.Err() != nil {
					continue
				}
				n := p.node()
				if given != nil && sameNode(given, n) {
					continue
				}
				given = n
				cb(n)
			}
		}
	}()
}

// notify asks for a status update with the latest summary; it never
// blocks, and updates asked for while one is pending are coalesced.
func (p *provider) notify() {
	p.mu.Lock()
	wake := p.wake
	p.mu.Unlock()
	if wake == nil {
		return
	}
	select {
	case wake <- struct{}{}:
	default:
	}
}

// sameNode tells whether two virtual nodes built by Build say the same,
// conditions' times aside.
func sameNode(a, b *corev1.Node) bool {
	strip := func(n *corev1.Node) *corev1.Node {
		n = n.DeepCopy()
		for i := range n.Status.Conditions {
			n.Status.Conditions[i].LastHeartbeatTime = metav1.Time{}
			n.Status.Conditions[i].LastTransitionTime = metav1.Time{}
		}
		return n
	}
	return apiequality.Semantic.DeepEqual(strip(a), strip(b))
}

// node is the virtual node as the target's summary describes it.
func (p *provider) node() *corev1.Node {
	return Build(p.target.Ref, p.target.Summary(), p.opts)
}

// Build computes a virtual node from its target's summary (nil if unknown).
func Build(ref targets.Ref, summary *v1alpha1.ClusterSummary, opts Options) *corev1.Node {
	name := ref.VirtualNodeName()
	nodeLabels := map[string]string{}
	capacity := corev1.ResourceList{}
	allocatable := corev1.ResourceList{}
	if summary != nil {
		for k, v := range CommonLabels(summary.Nodes) {
			nodeLabels[k] = v
		}
		if summary.Capacity != nil {
			capacity = summary.Capacity.DeepCopy()
		}
		if summary.Allocatable != nil {
			allocatable = summary.Allocatable.DeepCopy()
		}
	}
	for _, l := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods} {
		if _, ok := capacity[l]; !ok {
			capacity[l] = resource.Quantity{}
		}
		if _, ok := allocatable[l]; !ok {
			allocatable[l] = resource.Quantity{}
		}
	}
	// Ours last: a target's own labels never override them.
	nodeLabels[v1alpha1.LabelVirtualKubeletProvider] = v1alpha1.ProviderName
	nodeLabels[LabelType] = TypeValue
	nodeLabels[LabelRole] = RoleValue
	// Label values are limited to 63 characters, names to 253.
	nodeLabels[v1alpha1.LabelTargetName] = names.Fit(ref.Name, names.MaxLabel)
	nodeLabels[corev1.LabelHostname] = names.Fit(name, names.MaxLabel)
	now := metav1.Now()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: nodeLabels},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{Taint}},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: allocatable,
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: ReasonTargetReachable,
				Message: fmt.Sprintf("target %s answers", ref.String()), LastHeartbeatTime: now, LastTransitionTime: now,
			}},
			NodeInfo: corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "amd64", KubeletVersion: "admiralty"},
		},
	}
	if opts.KubeletAddress != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: opts.KubeletAddress}}
	}
	if opts.KubeletPort != 0 {
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = opts.KubeletPort
	}
	return n
}

// perNodeLabels differ from node to node by nature; sharing them would be a
// coincidence of a one-node cluster, and they would mislead selectors.
var perNodeLabels = map[string]bool{
	corev1.LabelHostname: true,
}

// CommonLabels returns the labels that every schedulable node of the
// summary has with the same value.
func CommonLabels(nodes []v1alpha1.NodeSummary) map[string]string {
	var common map[string]string
	for _, n := range nodes {
		if n.Unschedulable {
			continue
		}
		if common == nil {
			common = map[string]string{}
			for k, v := range n.Labels {
				if !perNodeLabels[k] {
					common[k] = v
				}
			}
			continue
		}
		for k, v := range common {
			if n.Labels[k] != v {
				delete(common, k)
			}
		}
	}
	keys := make([]string, 0, len(common))
	for k := range common {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		out[k] = common[k]
	}
	return out
}

// NewController is the delegator's factory of the virtual node controller.
func NewController(_ context.Context, d *app.Delegator) (app.Controller, error) {
	nodes := d.KubeInformers.Core().V1().Nodes().Informer()
	ti := d.MCInformers.Multicluster().V1alpha1().Targets()
	ci := d.MCInformers.Multicluster().V1alpha1().ClusterTargets()
	// The nodes advertise the leader's kubelet endpoint (delegator/kubelet),
	// so that the API server calls it for logs and exec on proxy pods.
	// Validate has checked the port already.
	kubeletPort, err := d.Options.KubeletPort()
	if err != nil {
		return nil, err
	}
	c := New(Options{
		LeaseDurationSeconds: int32(d.Options.VirtualNodeLeaseDuration / time.Second),
		PingInterval:         d.Options.VirtualNodeLeaseDuration / 4,
		KubeletPort:          kubeletPort,
		KubeletAddress:       d.Options.KubeletAdvertiseAddress,
	}, d.Client, d.Targets, nodes, ti.Lister(), ci.Lister(), ti.Informer().HasSynced, ci.Informer().HasSynced)
	c.WatchTargets(ti.Informer(), ci.Informer())
	return c, nil
}
