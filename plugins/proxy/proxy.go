// Package proxy is the scheduler plugin of the admiralty-proxy profile: it
// places proxy pods on the virtual nodes that stand for target clusters.
//
// The scheduling cycle never waits on a remote cluster:
//   - PreFilter reads the original pod saved on the proxy;
//   - Filter simulates the original pod, with the upstream filter plugins,
//     against the target's nodes as its ClusterSummary describes them (held
//     in memory by an informer), minus what this source has in flight there;
//   - Score prefers targets by the configured policy;
//   - Reserve books the pod's requests against the chosen target, in memory;
//   - Permit sends ONE PodChaperon to the target, off the scheduling cycle,
//     and makes the binding cycle wait until the target's own scheduler
//     (profile admiralty-candidate) has placed the candidate, or refused it;
//   - a refusal or a timeout unreserves: the chaperon is deleted and the
//     target is avoided by this pod for a while; the pod is retried.
//
// From Reserve to the end of an attempt, the dispatcher (dispatch.go,
// send.go) holds the state: reservations, places, timers, verdicts.
package proxy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/podtopologyspread"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	"k8s.io/utils/clock"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	mcinformers "admiralty.io/multicluster-scheduler/apis/generated/informers/externalversions"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/controller"
	"admiralty.io/multicluster-scheduler/plugins/simulator"
	"admiralty.io/multicluster-scheduler/proxypod"
	"admiralty.io/multicluster-scheduler/targets"
	"admiralty.io/multicluster-scheduler/targets/kubeconfig"
)

// Name is the plugin's name in KubeSchedulerConfiguration profiles.
const Name = "AdmiraltyProxy"

// Reasons the plugin gives.
const (
	ErrReasonNotVirtual      = "node is not an Admiralty virtual node"
	ErrReasonNotProxy        = "pod is not a proxy pod (no " + v1alpha1.AnnotationSourcePodManifest + " annotation)"
	ErrReasonNoTarget        = "no connected target behind this virtual node"
	ErrReasonNoSummary       = "the target has not published its ClusterSummary yet"
	ErrReasonPinned          = "pinned elsewhere by " + v1alpha1.AnnotationClusterName
	ErrReasonOtherNamespace  = "serves another namespace: Target"
	ErrReasonRecentlyRefused = "the target refused this pod recently"
)

// Scoring policies.
const (
	// PolicyLeastAllocated prefers the target with the most free capacity
	// left (spreads load over clusters). The default.
	PolicyLeastAllocated = "LeastAllocated"
	// PolicyMostAllocated prefers the fullest target that fits (packs).
	PolicyMostAllocated = "MostAllocated"
)

// Args configure the plugin (pluginConfig of the admiralty-proxy profile).
type Args struct {
	// ClusterName is this (source) cluster's name, as the delegator's
	// --cluster-name: it labels the PodChaperons this source creates.
	ClusterName string `json:"clusterName"`
	// CandidateTimeout bounds how long a proxy waits for its target to
	// place the candidate. Default 30s.
	CandidateTimeout metav1.Duration `json:"candidateTimeout"`
	// RefusedTargetTTL is how long a target that refused a pod is avoided
	// by that pod, doubled with each further refusal by that target up to
	// 16 times. Default 1m.
	RefusedTargetTTL metav1.Duration `json:"refusedTargetTTL"`
	// ScoringPolicy is LeastAllocated (default) or MostAllocated.
	ScoringPolicy string `json:"scoringPolicy"`
	// TargetWeights multiply the score of targets, by Target name (default 1).
	TargetWeights map[string]int64 `json:"targetWeights"`
	// MaxInFlightPerTarget bounds the PodChaperons this source has in a
	// target without a verdict yet. The proxies chosen for a target beyond
	// that wait in the plugin, in order, bound to nothing, until a verdict
	// frees a place: a burst of proxies never floods a target's API server,
	// delegator and scheduler, whose verdicts would then come later than
	// candidateTimeout and be retried. Default 100.
	MaxInFlightPerTarget int `json:"maxInFlightPerTarget"`
	// KubeAPIQPS and KubeAPIBurst limit each target client.
	KubeAPIQPS   float32 `json:"kubeAPIQPS"`
	KubeAPIBurst int     `json:"kubeAPIBurst"`
	// Kubeconfigs is what the kubeconfigs of Targets' and ClusterTargets'
	// Secrets may contain and point at: the same rules as the delegator's
	// --target-* and --cluster-target-* flags.
	Kubeconfigs kubeconfig.Rules `json:"kubeconfigs"`
}

func (a *Args) setDefaults() {
	if a.CandidateTimeout.Duration == 0 {
		a.CandidateTimeout.Duration = 30 * time.Second
	}
	if a.RefusedTargetTTL.Duration == 0 {
		a.RefusedTargetTTL.Duration = time.Minute
	}
	if a.ScoringPolicy == "" {
		a.ScoringPolicy = PolicyLeastAllocated
	}
	if a.MaxInFlightPerTarget == 0 {
		a.MaxInFlightPerTarget = 100
	}
	if a.KubeAPIQPS == 0 {
		a.KubeAPIQPS = 500
	}
	if a.KubeAPIBurst == 0 {
		a.KubeAPIBurst = 1000
	}
}

func (a *Args) validate() error {
	if a.ClusterName == "" {
		return fmt.Errorf("%s args: clusterName is required", Name)
	}
	if a.ScoringPolicy != PolicyLeastAllocated && a.ScoringPolicy != PolicyMostAllocated {
		return fmt.Errorf("%s args: scoringPolicy must be %s or %s, not %q", Name, PolicyLeastAllocated, PolicyMostAllocated, a.ScoringPolicy)
	}
	if a.MaxInFlightPerTarget < 1 {
		return fmt.Errorf("%s args: maxInFlightPerTarget must be at least 1, not %d", Name, a.MaxInFlightPerTarget)
	}
	for name, w := range a.TargetWeights {
		if w < 0 || w > 100 {
			return fmt.Errorf("%s args: targetWeights[%s] must be between 0 and 100", Name, name)
		}
	}
	if err := a.Kubeconfigs.Validate(); err != nil {
		return fmt.Errorf("%s args: kubeconfigs.%w", Name, err)
	}
	return nil
}

// Plugin places proxy pods.
type Plugin struct {
	handle   fwk.Handle
	args     Args
	sim      *simulator.Simulator
	registry *targets.Registry

	// targetOf maps a virtual node to its live target (the registry's).
	targetOf func(node string) *targets.Target

	// spread is the upstream PodTopologySpread plugin, for the constraints
	// that spread pods over clusters (advanced.go).
	spread *podtopologyspread.PodTopologySpread

	// attempts: metrics and Events of each attempt (metrics.go).
	attempts *attempts

	// clock: the plugin's and its dispatcher's time (fake in tests).
	clock clock.WithDelayedExecution
	// dispatch sends the chosen proxies' chaperons and hands the targets'
	// verdicts to the proxies waiting in Permit (dispatch.go, send.go).
	dispatch *dispatcher

	mu sync.Mutex
	// pending proxies are requeued when a target frees room.
	pending          map[types.UID]*v1.Pod
	requeueScheduled bool
}

var (
	_ fwk.PreFilterPlugin   = &Plugin{}
	_ fwk.FilterPlugin      = &Plugin{}
	_ fwk.PreScorePlugin    = &Plugin{}
	_ fwk.ScorePlugin       = &Plugin{}
	_ fwk.ScoreExtensions   = &Plugin{}
	_ fwk.ReservePlugin     = &Plugin{}
	_ fwk.PermitPlugin      = &Plugin{}
	_ fwk.PostBindPlugin    = &Plugin{}
	_ fwk.EnqueueExtensions = &Plugin{}
)

// New is the plugin factory registered with the scheduler command.
func New(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	args := Args{}
	if obj != nil {
		if err := frameworkruntime.DecodeInto(obj, &args); err != nil {
			return nil, fmt.Errorf("%s args: %w", Name, err)
		}
	}
	args.setDefaults()
	if err := args.validate(); err != nil {
		return nil, err
	}
	sim, err := simulator.New(ctx)
	if err != nil {
		return nil, err
	}
	p := newPlugin(h, args, clock.RealClock{})
	p.sim = sim
	if p.spread, err = newSpreadPlugin(ctx, h); err != nil {
		return nil, err
	}
	// Before the scheduler starts its informers; afterwards (a plugin
	// made again, in tests) the cache keeps what it has.
	if err := h.SharedInformerFactory().Core().V1().Pods().Informer().SetTransform(trimPod); err != nil {
		klog.FromContext(ctx).Info("Pod cache keeps bound pods whole: its transform could not be set", "err", err)
	}
	// The scheduler's configuration asks for protobuf, which custom
	// resources do not speak.
	cfg := rest.CopyConfig(h.KubeConfig())
	cfg.ContentType, cfg.AcceptContentTypes = "", ""
	mc, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	factory := mcinformers.NewSharedInformerFactory(mc, 0)
	p.registry = targets.NewRegistry(targets.Options{
		SourceClusterName: args.ClusterName,
		LocalConfig:       cfg,
		QPS:               args.KubeAPIQPS,
		Burst:             args.KubeAPIBurst,
		UserAgent:         "kube-scheduler-admiralty/" + args.ClusterName,
		ChaperonTransform: keepVerdict,
		Kubeconfigs:       args.Kubeconfigs,
	}, h.ClientSet(), mc, factory)
	p.targetOf = p.registry.ByVirtualNode
	// A deleted proxy is forgotten.
	_, _ = h.SharedInformerFactory().Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if pod, ok := controller.Object(obj).(*v1.Pod); ok {
				p.podGone(pod.UID)
			}
		},
	})
	p.registry.Subscribe(p)
	factory.Start(ctx.Done())
	go func() {
		if err := p.registry.Start(ctx); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "Target registry stopped")
		}
	}()
	return p, nil
}

// newPlugin is the plugin's state, without its connections (tests).
func newPlugin(h fwk.Handle, args Args, c clock.WithDelayedExecution) *Plugin {
	var recorder events.EventRecorder
	if h != nil {
		recorder = h.EventRecorder()
	}
	a := newAttempts(recorder, c)
	p := &Plugin{
		handle:   h,
		args:     args,
		attempts: a,
		clock:    c,
		dispatch: newDispatcher(c, args, a),
		pending:  map[types.UID]*v1.Pod{},
	}
	if h != nil {
		p.dispatch.waitingPod = h.GetWaitingPod
	}
	p.dispatch.activate = p.activateIfPending
	p.dispatch.onDecided = p.requeuePending
	return p
}

// podGone forgets a deleted proxy.
func (p *Plugin) podGone(uid types.UID) {
	p.dispatch.podGone(uid)
	p.mu.Lock()
	delete(p.pending, uid)
	p.mu.Unlock()
}

// keepVerdict is the transform of the scheduler's PodChaperon caches: the
// plugin reads a chaperon's identity and labels and its status's node,
// phase, PodScheduled condition and nominated node, never the pod spec it
// carries, which is most of its size.
func keepVerdict(obj any) (any, error) {
	c, ok := obj.(*v1alpha1.PodChaperon)
	if !ok {
		return obj, nil
	}
	return &v1alpha1.PodChaperon{
		TypeMeta: c.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              c.Name,
			Namespace:         c.Namespace,
			UID:               c.UID,
			ResourceVersion:   c.ResourceVersion,
			Generation:        c.Generation,
			CreationTimestamp: c.CreationTimestamp,
			DeletionTimestamp: c.DeletionTimestamp,
			Labels:            c.Labels,
		},
		Status: v1alpha1.PodChaperonStatus{
			PodStatus: v1.PodStatus{
				Phase:             c.Status.Phase,
				Conditions:        c.Status.Conditions,
				NominatedNodeName: c.Status.NominatedNodeName,
			},
			NodeName: c.Status.NodeName,
		},
	}, nil
}

// Name returns the plugin name.
func (*Plugin) Name() string { return Name }

// TargetAdded implements targets.Handler: the target's chaperons decide the
// waiting proxies, and tell which proxies have chaperons there.
func (p *Plugin) TargetAdded(t *targets.Target) {
	inf := t.Chaperons.Multicluster().V1alpha1().PodChaperons().Informer()
	index, err := indexInformer(inf)
	if err != nil {
		// Only if the target's informers stopped already (it is gone).
		klog.Background().Error(err, "Cannot index the target's chaperons", "target", t.Ref.String())
		return
	}
	_, _ = inf.AddEventHandler(handlerFuncs{
		onChange: func(c *v1alpha1.PodChaperon) { p.dispatch.chaperonChanged(t, c) },
		onDelete: func(c *v1alpha1.PodChaperon) { p.dispatch.chaperonDeleted(t, c) },
	})
	p.dispatch.targetAdded(t, index)
	// The summary is read in Filter; a summary that shows room made
	// requeues the proxies that fit nowhere.
	_, _ = t.Summaries.Multicluster().V1alpha1().ClusterSummaries().Informer().AddEventHandler(p.summaryHandler())
}

// TargetRemoved implements targets.Handler: the registry forgets the
// target, in-flight reservations there end with their pods' permits.
func (p *Plugin) TargetRemoved(t *targets.Target) { p.dispatch.targetRemoved(t) }

// EventsToRegister: a proxy that fits nowhere is retried when a virtual
// node changes (its status follows its target's summary) or appears.
func (p *Plugin) EventsToRegister(context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.Update}},
	}, nil
}

const stateKey fwk.StateKey = Name

// cycleState carries the original pod and the per-node scores of one
// scheduling cycle.
type cycleState struct {
	// started is when PreFilter ran: the attempt's start (metrics).
	started time.Time
	source  *v1.Pod
	// noReservation and canPreempt: see advanced.go.
	noReservation, canPreempt bool
	// preferred node affinity terms of the original, if any.
	preferred *nodeaffinity.PreferredSchedulingTerms
	// spread is the proxy with the across-cluster constraints, for the
	// upstream PodTopologySpread plugin, which keeps its own cycle state;
	// acrossKeys are their topology keys, left out of the delegate.
	spread        *v1.Pod
	spreadState   fwk.CycleState
	spreadScoring bool
	acrossKeys    map[string]bool

	mu sync.Mutex
	// Per virtual node: the capacity score, the raw preferred affinity
	// score, the raw spread score, and whether the pod fits there only once
	// pods make room (preemption, no-reservation).
	scores    map[string]int64
	affinity  map[string]int64
	spreadRaw map[string]int64
	later     map[string]bool
}

func (s *cycleState) Clone() fwk.StateData { return s }

// PreFilter reads the original pod from the proxy and prepares the
// across-cluster topology spread.
func (p *Plugin) PreFilter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	source, err := proxypod.SourcePod(pod)
	if err != nil {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
	}
	s := &cycleState{started: p.clock.Now(), source: source, scores: map[string]int64{}, affinity: map[string]int64{}, spreadRaw: map[string]int64{}, later: map[string]bool{}}
	if st := p.prepareAdvanced(ctx, s, pod, nodes); !st.IsSuccess() {
		return nil, st
	}
	state.Write(stateKey, s)
	if p.pending != nil {
		p.notePending(pod)
	}
	return nil, nil
}

// PreFilterExtensions is not needed: Filter does not depend on other pods
// of the source.
func (p *Plugin) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// Filter simulates the original pod in the target of the virtual node.
func (p *Plugin) Filter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	node := nodeInfo.Node()
	if !v1alpha1.IsVirtualNode(node) {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, ErrReasonNotVirtual)
	}
	s, err := readState(state)
	if err != nil {
		return fwk.AsStatus(err)
	}
	t := p.targetOf(node.Name)
	if t == nil {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, ErrReasonNoTarget)
	}
	if t.Scope != "" && t.Scope != pod.Namespace {
		// A Target serves the pods of its own namespace only: its source
		// identity may act in that namespace of the target, nowhere else.
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("%s %s/%s", ErrReasonOtherNamespace, t.Scope, t.Ref.Name))
	}
	if pin := s.source.Annotations[v1alpha1.AnnotationClusterName]; pin != "" && pin != t.Ref.Name {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("%s=%s", ErrReasonPinned, pin))
	}
	if msg, ok := p.dispatch.recentlyRefused(pod.UID, t.Ref); ok {
		return fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("%s: %s: %s", t.Ref.Name, ErrReasonRecentlyRefused, msg))
	}
	summary := t.Summary()
	if summary == nil {
		return fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("%s: %s", t.Ref.Name, ErrReasonNoSummary))
	}
	if s.spread != nil {
		// Across clusters: the upstream plugin over the virtual nodes.
		if st := p.spread.Filter(ctx, s.spreadState, s.spread, nodeInfo); !st.IsSuccess() {
			return fwk.NewStatus(st.Code(), fmt.Sprintf("%s: %s", t.Ref.Name, reasonsOf(st)))
		}
	}
	placed, unplaced := p.dispatch.reservations(t, pod.UID)
	nodes := simulator.NodeInfos(summary, placed)
	res := p.sim.Simulate(ctx, s.source, nodes)
	logger := klog.FromContext(ctx)
	if len(res.Fits) == 0 {
		// A pod that may preempt, or that queues in its target, goes where
		// it would fit once pods make room; the target's scheduler decides.
		if s.canPreempt || s.noReservation {
			if later := p.sim.Simulate(ctx, s.source, simulator.EmptyNodeInfos(summary)); len(later.Fits) > 0 {
				s.mu.Lock()
				s.later[node.Name] = true
				if s.preferred != nil {
					s.affinity[node.Name] = affinityScore(s.preferred, later.Fits)
				}
				s.mu.Unlock()
				logger.V(4).Info("Simulated: fits once pods make room", "pod", klog.KObj(pod), "target", t.Ref.String(),
					"now", shortReason(res.Reason), "preempt", s.canPreempt, "noReservation", s.noReservation)
				return nil
			}
		}
		return fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("%s: %s", t.Ref.Name, shortReason(res.Reason)))
	}
	free := simulator.Free(res.Fits)
	requests := podRequests(s.source)
	for _, r := range unplaced {
		subtract(free, r)
	}
	for name, q := range requests {
		if f, ok := free[name]; ok && f.Cmp(q) < 0 && !s.noReservation {
			return fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("%s: pods in flight to this target leave too little %s", t.Ref.Name, name))
		}
	}
	score := p.score(summary, free, requests)
	var affinity int64
	if s.preferred != nil {
		affinity = affinityScore(s.preferred, res.Fits)
	}
	s.mu.Lock()
	s.scores[node.Name] = score
	s.affinity[node.Name] = affinity
	s.mu.Unlock()
	logger.V(4).Info("Simulated", "pod", klog.KObj(pod), "target", t.Ref.String(), "fits", len(res.Fits), "capacityScore", score, "nodeAffinity", affinity)
	return nil
}

// shortReason turns the scheduler's sentence into the per-target form
// "0/3 nodes: 3 Insufficient cpu".
func shortReason(reason string) string {
	reason = strings.Replace(reason, " nodes are available:", " nodes:", 1)
	return strings.TrimSuffix(reason, ".")
}

// score rates the target from 0 to 100 by the configured policy: the share
// of the target's allocatable CPU and memory left after the pod.
// NormalizeScore combines it with the other parts and targetWeights.
func (p *Plugin) score(summary *v1alpha1.ClusterSummary, free, requests v1.ResourceList) int64 {
	var total, n float64
	for _, name := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
		alloc, ok := summary.Allocatable[name]
		if !ok || alloc.IsZero() {
			continue
		}
		f := free[name]
		f.Sub(requests[name])
		ratio := float64(f.MilliValue()) / float64(alloc.MilliValue())
		if ratio < 0 {
			ratio = 0
		}
		total += ratio
		n++
	}
	share := 0.5
	if n > 0 {
		share = total / n
	}
	if p.args.ScoringPolicy == PolicyMostAllocated {
		share = 1 - share
	}
	return int64(share * float64(fwk.MaxNodeScore))
}

// Score returns the capacity score that Filter computed for the virtual
// node, and has the upstream plugin count the soft spread's pods there;
// NormalizeScore combines them.
func (p *Plugin) Score(ctx context.Context, state fwk.CycleState, _ *v1.Pod, nodeInfo fwk.NodeInfo) (int64, *fwk.Status) {
	s, err := readState(state)
	if err != nil {
		return 0, fwk.AsStatus(err)
	}
	name := nodeInfo.Node().Name
	if s.spreadScoring {
		raw, st := p.spread.Score(ctx, s.spreadState, s.spread, nodeInfo)
		if !st.IsSuccess() {
			return 0, st
		}
		s.mu.Lock()
		s.spreadRaw[name] = raw
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.scores[name], nil
}

// Reserve books the pod's requests in the target, in memory, so that the
// next pods see them before the target's summary does.
func (p *Plugin) Reserve(_ context.Context, state fwk.CycleState, pod *v1.Pod, nodeName string) *fwk.Status {
	s, err := readState(state)
	if err != nil {
		return fwk.AsStatus(err)
	}
	t := p.targetOf(nodeName)
	if t == nil {
		return fwk.NewStatus(fwk.Unschedulable, ErrReasonNoTarget)
	}
	p.attempts.reserved(pod, t.Ref.String(), s.started, p.dispatch.refusedBefore(pod.UID))
	p.mu.Lock()
	p.notePlacedLocked(pod.UID)
	p.mu.Unlock()
	p.dispatch.reserve(pod, t, podRequests(s.source), ChaperonName(pod, p.args.ClusterName), s.noReservation)
	return nil
}

// Unreserve forgets the reservation and deletes the chaperon, if one was
// sent.
func (p *Plugin) Unreserve(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	// Undecided here: the framework's bound on the wait (permitTimeout)
	// passed.
	timeout := "no answer within " + p.permitTimeout().String()
	p.attempts.unreserved(pod.UID, timeout)
	if r := p.dispatch.unreserve(ctx, pod.UID, timeout); r == nil {
		return
	}
	// The framework keeps a pod that Permit rejected aside until an event
	// it knows of. Activated now, while its binding cycle runs, the pod
	// goes back to the queue through its backoff (the framework's
	// handling of an activation in flight): the other targets are tried
	// again after it; a target that refused the pod is tried again when
	// its refusal ends (the dispatcher activates the pod then).
	p.activate(pod)
	p.requeuePending()
}

// Permit sends the chaperon, off the scheduling cycle, and makes the
// binding cycle wait for the target's verdict.
func (p *Plugin) Permit(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodeName string) (*fwk.Status, time.Duration) {
	s, err := readState(state)
	if err != nil {
		return fwk.AsStatus(err), 0
	}
	r := p.dispatch.reservation(pod.UID)
	if r == nil {
		return fwk.NewStatus(fwk.Unschedulable, "no reservation"), 0
	}
	source := s.source
	if len(s.acrossKeys) > 0 {
		// Decided here, over clusters: the target's nodes may not even
		// carry the key (multicluster.admiralty.io/cluster-name).
		source = source.DeepCopy()
		source.Spec.TopologySpreadConstraints = withoutKeys(source.Spec.TopologySpreadConstraints, s.acrossKeys)
	}
	chaperon, err := proxypod.MakeChaperon(source, pod, p.args.ClusterName)
	if err != nil {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error()), 0
	}
	p.dispatch.permit(ctx, r, chaperon)
	return fwk.NewStatus(fwk.Wait), p.permitTimeout()
}

// permitTimeout bounds the whole wait of a proxy in Permit: for a place
// among its target's chaperons in flight, then for the verdict. The
// verdict itself is bounded by candidateTimeout without progress (timer);
// this is the backstop.
func (p *Plugin) permitTimeout() time.Duration { return 10 * p.args.CandidateTimeout.Duration }

// sentKind names what Permit sends to t: a PodChaperon, or in a self
// target the delegate itself (targets.SelfChaperons).
func sentKind(t *targets.Target) string {
	if t.Self {
		return "Delegate"
	}
	return "PodChaperon"
}

// PostBind keeps the reservation briefly: the target's summary counts the
// delegate within its update interval (1s by default).
func (p *Plugin) PostBind(_ context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	p.attempts.bound(pod.UID)
	p.dispatch.bound(pod.UID)
}

func readState(state fwk.CycleState) (*cycleState, error) {
	d, err := state.Read(stateKey)
	if err != nil {
		return nil, fmt.Errorf("%s: reading cycle state: %w", Name, err)
	}
	s, ok := d.(*cycleState)
	if !ok {
		return nil, fmt.Errorf("%s: cycle state has type %T", Name, d)
	}
	return s, nil
}

func podRequests(pod *v1.Pod) v1.ResourceList {
	return resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
}

func subtract(from, l v1.ResourceList) {
	for name, q := range l {
		if f, ok := from[name]; ok {
			f.Sub(q)
			from[name] = f
		}
	}
}
