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
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/podtopologyspread"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	mcinformers "admiralty.io/multicluster-scheduler/apis/generated/informers/externalversions"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
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
	// by that pod. Default 1m.
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

	mu       sync.Mutex
	inflight map[types.UID]*reservation
	refused  map[types.UID]map[targets.Ref]refusal
	// pending proxies are requeued when a target frees room.
	pending          map[types.UID]*v1.Pod
	requeueScheduled bool
	// leaving: the chaperons of unreserved proxies while they and their
	// delegates are deleted, by proxy UID, then target and name. A proxy's
	// next chaperon is sent only once they are gone, so that two delegates
	// of one proxy never exist at once.
	leaving map[types.UID]map[string]chan struct{}
	// slots: per target, one token per chaperon sent and not decided yet
	// (Args.MaxInFlightPerTarget).
	slots map[targets.Ref]chan struct{}
	// progress: per target, when one of this source's chaperons there last
	// changed (the target working through them).
	progress map[targets.Ref]time.Time
}

// reservation is a proxy this source sent (or is sending) to a target.
type reservation struct {
	target   *targets.Target
	proxy    *v1.Pod
	requests v1.ResourceList
	chaperon string
	// chaperonUID is the sent chaperon's, once created.
	chaperonUID types.UID
	// nodeName is the target node, once the candidate is placed.
	nodeName string
	// decided: the target's verdict arrived (or sending failed).
	decided bool
	// noReservation: the proxy binds as soon as the chaperon exists, and
	// books nothing (multicluster.admiralty.io/no-reservation).
	noReservation bool
	// cancel ends the send (waiting for a slot, creating the chaperon)
	// when the attempt ends first.
	cancel context.CancelFunc
	// slot is the target's token this reservation holds while its
	// chaperon is sent and undecided.
	slot chan struct{}
	// timer fires when the target made no progress on the chaperons of
	// this source for candidateTimeout (a change of any of them, by
	// resourceVersion, is progress: a target working through its queue is
	// not stalled, however long this one waits).
	timer      *time.Timer
	progressRV string
}

type refusal struct {
	until   time.Time
	message string
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
	p := &Plugin{
		handle:   h,
		args:     args,
		sim:      sim,
		inflight: map[types.UID]*reservation{},
		attempts: newAttempts(h.EventRecorder()),
		refused:  map[types.UID]map[targets.Ref]refusal{},
		pending:  map[types.UID]*v1.Pod{},
		leaving:  map[types.UID]map[string]chan struct{}{},
		slots:    map[targets.Ref]chan struct{}{},
		progress: map[targets.Ref]time.Time{},
	}
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
	p.registry.Subscribe(p)
	factory.Start(ctx.Done())
	go func() {
		if err := p.registry.Start(ctx); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "Target registry stopped")
		}
	}()
	return p, nil
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
// waiting proxies.
func (p *Plugin) TargetAdded(t *targets.Target) {
	_, _ = t.Chaperons.Multicluster().V1alpha1().PodChaperons().Informer().AddEventHandler(handlerFuncs{
		onChange: func(c *v1alpha1.PodChaperon) { p.chaperonChanged(t, c) },
		onDelete: func(c *v1alpha1.PodChaperon) {
			p.chaperonDeleted(t, c)
			p.left(types.UID(c.Labels[v1alpha1.LabelParentUID]), leavingKey(t, c.Name))
		},
	})
	// The summary is read in Filter; a summary that shows room made
	// requeues the proxies that fit nowhere.
	_, _ = t.Summaries.Multicluster().V1alpha1().ClusterSummaries().Informer().AddEventHandler(p.summaryHandler())
}

// TargetRemoved implements targets.Handler: the registry forgets the
// target, in-flight reservations there end with their pods' permits.
func (p *Plugin) TargetRemoved(*targets.Target) {}

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
	s := &cycleState{started: time.Now(), source: source, scores: map[string]int64{}, affinity: map[string]int64{}, spreadRaw: map[string]int64{}, later: map[string]bool{}}
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
	if msg, ok := p.recentlyRefused(pod.UID, t.Ref); ok {
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
	placed, unplaced := p.reservations(t, pod.UID)
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
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts.reserved(pod, t.Ref.String(), s.started, len(p.refused[pod.UID]) > 0)
	p.notePlacedLocked(pod.UID)
	p.inflight[pod.UID] = &reservation{
		target:        t,
		proxy:         pod,
		requests:      podRequests(s.source),
		chaperon:      ChaperonName(pod, p.args.ClusterName),
		noReservation: s.noReservation,
	}
	return nil
}

// Unreserve forgets the reservation and deletes the chaperon, if sent.
func (p *Plugin) Unreserve(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	// Undecided here: the framework's bound on the wait (permitTimeout)
	// passed.
	timeout := "no answer within " + p.permitTimeout().String()
	p.mu.Lock()
	r := p.inflight[pod.UID]
	delete(p.inflight, pod.UID)
	if r != nil {
		if !r.decided {
			p.refuseLocked(pod.UID, r.target.Ref, timeout)
		}
		p.endLocked(r)
	}
	p.mu.Unlock()
	p.attempts.unreserved(pod.UID, timeout)
	if r == nil {
		return
	}
	logger := klog.FromContext(ctx)
	// The scheduler would keep the pod aside until an event it knows
	// about: try the other targets now, and this one again once it is no
	// longer avoided.
	p.activate(pod, 0)
	p.activate(pod, p.args.RefusedTargetTTL.Duration)
	p.requeuePending()
	key := leavingKey(r.target, r.chaperon)
	p.leave(pod.UID, key)
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		// Foreground: the chaperon goes only once its delegate is gone,
		// and its disappearance lets the proxy's next chaperon go.
		foreground := metav1.DeletePropagationForeground
		err := r.target.MCClient.MulticlusterV1alpha1().PodChaperons(pod.Namespace).Delete(ctx, r.chaperon, metav1.DeleteOptions{PropagationPolicy: &foreground})
		if err != nil {
			p.left(pod.UID, key)
		}
		if err != nil && !isNotFound(err) {
			// The delegator's cleanup removes chaperons whose proxy is not
			// bound to their target.
			logger.Error(err, "Cannot delete the chaperon of an unreserved proxy", "pod", klog.KObj(pod), "target", r.target.Ref.String())
		}
	}()
}

func leavingKey(t *targets.Target, chaperon string) string { return t.Ref.String() + "/" + chaperon }

func (p *Plugin) leave(uid types.UID, key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.leaving[uid]
	if m == nil {
		m = map[string]chan struct{}{}
		p.leaving[uid] = m
	}
	if _, ok := m[key]; !ok {
		m[key] = make(chan struct{})
	}
}

func (p *Plugin) left(uid types.UID, key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch, ok := p.leaving[uid][key]; ok {
		close(ch)
		delete(p.leaving[uid], key)
		if len(p.leaving[uid]) == 0 {
			delete(p.leaving, uid)
		}
	}
}

// waitLeft waits until the proxy's unreserved chaperons are gone (in
// another target, or in this one with the same name).
func (p *Plugin) waitLeft(ctx context.Context, uid types.UID) error {
	p.mu.Lock()
	var chans []chan struct{}
	for _, ch := range p.leaving[uid] {
		chans = append(chans, ch)
	}
	p.mu.Unlock()
	for _, ch := range chans {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("the pod's delegate in the target it left is still being deleted")
		}
	}
	return nil
}

// Permit sends the chaperon, off the scheduling cycle, and makes the
// binding cycle wait for the target's verdict.
func (p *Plugin) Permit(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodeName string) (*fwk.Status, time.Duration) {
	s, err := readState(state)
	if err != nil {
		return fwk.AsStatus(err), 0
	}
	p.mu.Lock()
	r := p.inflight[pod.UID]
	p.mu.Unlock()
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
	sendCtx, cancel := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), klog.FromContext(ctx)))
	p.mu.Lock()
	r.cancel = cancel
	p.mu.Unlock()
	go p.send(sendCtx, r, chaperon)
	return fwk.NewStatus(fwk.Wait), p.permitTimeout()
}

// permitTimeout bounds the whole wait of a proxy in Permit: for a place
// among its target's chaperons in flight, then for the verdict. The
// verdict itself is bounded by candidateTimeout without progress (timer);
// this is the backstop.
func (p *Plugin) permitTimeout() time.Duration { return 10 * p.args.CandidateTimeout.Duration }

// acquire waits for a place among the target's chaperons in flight. It
// fails when the attempt ends first (ctx).
func (p *Plugin) acquire(ctx context.Context, r *reservation) error {
	ref := r.target.Ref
	p.mu.Lock()
	ch := p.slots[ref]
	if ch == nil {
		ch = make(chan struct{}, p.args.MaxInFlightPerTarget)
		p.slots[ref] = ch
	}
	p.mu.Unlock()
	select {
	case ch <- struct{}{}:
	default:
		queued.WithLabelValues(ref.String()).Inc()
		select {
		case ch <- struct{}{}:
			queued.WithLabelValues(ref.String()).Dec()
		case <-ctx.Done():
			queued.WithLabelValues(ref.String()).Dec()
			return ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.decided || p.inflight[r.proxy.UID] != r {
		<-ch
		return fmt.Errorf("the attempt ended")
	}
	r.slot = ch
	inFlight.WithLabelValues(ref.String()).Inc()
	return nil
}

// releaseLocked gives the reservation's place back, if it holds one, and
// stops its verdict timer.
func (p *Plugin) releaseLocked(r *reservation) {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if r.slot != nil {
		<-r.slot
		r.slot = nil
		inFlight.WithLabelValues(r.target.Ref.String()).Dec()
	}
}

// endLocked: the attempt is over; nothing of it may keep running.
func (p *Plugin) endLocked(r *reservation) {
	p.releaseLocked(r)
	if r.cancel != nil {
		r.cancel()
	}
}

// progressLocked records a change of r's chaperon (the target working on
// it) and starts the verdict timer if it is not running.
func (p *Plugin) progressLocked(r *reservation, rv string) {
	if r.decided || r.slot == nil || rv == r.progressRV {
		return
	}
	r.progressRV = rv
	p.progress[r.target.Ref] = time.Now()
	if r.timer == nil {
		r.timer = time.AfterFunc(p.args.CandidateTimeout.Duration, func() { p.timedOut(r) })
	}
}

// timedOut: the target made no progress on this source's chaperons for
// candidateTimeout. The pod is refused there; the pods waiting for a
// place in that target go elsewhere now rather than wait behind it.
func (p *Plugin) timedOut(r *reservation) {
	uid := r.proxy.UID
	message := "no answer within " + p.args.CandidateTimeout.Duration.String()
	behindMessage := fmt.Sprintf("%s: gave no verdict on an earlier pod within %s; not waiting behind it", r.target.Ref.Name, p.args.CandidateTimeout.Duration)
	p.mu.Lock()
	if p.inflight[uid] != r || r.decided {
		p.mu.Unlock()
		return
	}
	if since := time.Since(p.progress[r.target.Ref]); since < p.args.CandidateTimeout.Duration {
		// The target works on other chaperons of this source: wait on.
		r.timer = time.AfterFunc(p.args.CandidateTimeout.Duration-since, func() { p.timedOut(r) })
		p.mu.Unlock()
		return
	}
	// All decided before the place is given back, so that none of those
	// behind takes it.
	var behind []types.UID
	for quid, q := range p.inflight {
		if q.target.Ref == r.target.Ref && !q.decided && q.slot == nil && q.chaperonUID == "" && quid != uid {
			p.decideLocked(quid, q, behindMessage)
			behind = append(behind, quid)
		}
	}
	p.decideLocked(uid, r, message)
	p.mu.Unlock()
	klog.Background().V(2).Info("Target gave no verdict in time", "pod", klog.KObj(r.proxy), "target", r.target.Ref.String(), "timeout", p.args.CandidateTimeout.Duration, "podsRedirected", len(behind))
	p.attempts.timedOut(uid)
	p.tell(uid, false, message)
	for _, quid := range behind {
		p.tell(quid, false, behindMessage)
	}
	p.requeuePending()
}

// send creates the chaperon in the target and, on failure, rejects the pod.
//
// ctx ends with the attempt (endLocked). The proxy's previous delegate
// must be gone, and the target must have a place among its chaperons in
// flight, before this one is sent.
func (p *Plugin) send(ctx context.Context, r *reservation, chaperon *v1alpha1.PodChaperon) {
	leftCtx, cancelLeft := context.WithTimeout(ctx, p.args.CandidateTimeout.Duration)
	err := p.waitLeft(leftCtx, r.proxy.UID)
	cancelLeft()
	if err != nil {
		if ctx.Err() == nil {
			p.retry(r, err.Error())
		}
		return
	}
	if err := p.acquire(ctx, r); err != nil {
		return
	}
	attempt := ctx
	ctx, cancel := context.WithTimeout(ctx, p.args.CandidateTimeout.Duration)
	defer cancel()
	client := r.target.MCClient.MulticlusterV1alpha1().PodChaperons(chaperon.Namespace)
	created, err := client.Create(ctx, chaperon, metav1.CreateOptions{})
	if isAlreadyExists(err) {
		// Sent before (a restart, a retry): it is ours only if it names this
		// very proxy.
		created, err = client.Get(ctx, chaperon.Name, metav1.GetOptions{})
		if err == nil && created.Labels[v1alpha1.LabelParentUID] != string(r.proxy.UID) {
			err = fmt.Errorf("%s %s/%s exists in %s and belongs to another pod", sentKind(r.target), chaperon.Namespace, chaperon.Name, r.target.Ref.Name)
		}
	}
	if err != nil {
		if attempt.Err() != nil {
			// The attempt ended meanwhile (Unreserve deletes the chaperon).
			return
		}
		klog.FromContext(ctx).Error(err, "Cannot send the chaperon", "pod", klog.KObj(r.proxy), "target", r.target.Ref.String())
		p.decide(r.proxy.UID, false, fmt.Sprintf("%s: cannot create the %s: %v", r.target.Ref.Name, sentKind(r.target), err))
		return
	}
	p.mu.Lock()
	r.chaperonUID = created.UID
	p.progressLocked(r, created.ResourceVersion)
	p.mu.Unlock()
	p.attempts.sent(r.proxy.UID, sentKind(r.target), created.Name)
	if r.noReservation {
		// The pod is committed to this target: it binds now and waits
		// there for room, never moved elsewhere.
		p.decide(r.proxy.UID, true, "")
		return
	}
	p.chaperonChanged(r.target, created)
}

// sentKind names what Permit sends to t: a PodChaperon, or in a self
// target the delegate itself (targets.SelfChaperons).
func sentKind(t *targets.Target) string {
	if t.Self {
		return "Delegate"
	}
	return "PodChaperon"
}

// retry rejects the waiting pod without holding it against the target (not
// the target's fault), so that it is scheduled again at once.
func (p *Plugin) retry(r *reservation, message string) {
	p.mu.Lock()
	if r.decided {
		p.mu.Unlock()
		return
	}
	p.decideLocked(r.proxy.UID, r, "")
	p.mu.Unlock()
	p.tell(r.proxy.UID, false, message)
}

// chaperonDeleted: a chaperon deleted in the target before its verdict (by
// the source's feedback, a person, the target going away) will never be
// placed; the waiting pod is retried now rather than at candidateTimeout.
func (p *Plugin) chaperonDeleted(t *targets.Target, c *v1alpha1.PodChaperon) {
	uid := types.UID(c.Labels[v1alpha1.LabelParentUID])
	p.mu.Lock()
	r := p.inflight[uid]
	sent := r != nil && !r.decided && r.target.Ref == t.Ref && r.chaperonUID != "" && r.chaperonUID == c.UID
	p.mu.Unlock()
	if sent {
		p.retry(r, fmt.Sprintf("%s %s/%s was deleted in %s before the candidate was placed", sentKind(t), c.Namespace, c.Name, t.Ref.Name))
	}
}

// chaperonChanged decides a waiting proxy from its chaperon's status, as
// the target's delegator mirrors the candidate's.
func (p *Plugin) chaperonChanged(t *targets.Target, c *v1alpha1.PodChaperon) {
	uid := types.UID(c.Labels[v1alpha1.LabelParentUID])
	p.mu.Lock()
	r := p.inflight[uid]
	if r == nil || r.target.Ref != t.Ref || r.chaperon != c.Name || r.noReservation {
		p.mu.Unlock()
		return
	}
	if c.Status.NodeName != "" && r.nodeName == "" {
		r.nodeName = c.Status.NodeName
	}
	ours := r.chaperonUID == "" || r.chaperonUID == c.UID
	if ours {
		p.progressLocked(r, c.ResourceVersion)
	}
	p.mu.Unlock()
	if ours && c.Status.NodeName != "" {
		// The target's scheduler bound the candidate: its delegator
		// reports the node with the first status that shows it bound.
		p.decide(uid, true, "")
		return
	}
	for _, cond := range c.Status.Conditions {
		if cond.Type != v1.PodScheduled {
			continue
		}
		switch {
		case cond.Status == v1.ConditionTrue:
			p.decide(uid, true, "")
		case cond.Reason == v1.PodReasonUnschedulable && c.Status.NominatedNodeName != "":
			// The target's scheduler is preempting pods to make room for
			// the candidate: its verdict comes when they are gone.
			klog.Background().V(2).Info("Target preempting for the candidate", "chaperon", klog.KObj(c), "target", t.Ref.String(), "nominatedNode", c.Status.NominatedNodeName)
		case cond.Reason == v1.PodReasonUnschedulable:
			p.decide(uid, false, fmt.Sprintf("%s refused the candidate: %s", t.Ref.Name, cond.Message))
		}
	}
}

// decide allows or rejects the waiting proxy. The pod is registered as
// waiting once Permit returned; an answer faster than that is retried.
func (p *Plugin) decide(uid types.UID, allowed bool, message string) {
	p.mu.Lock()
	r := p.inflight[uid]
	if r == nil || r.decided {
		p.mu.Unlock()
		return
	}
	refusal := ""
	if !allowed {
		refusal = message
	}
	p.decideLocked(uid, r, refusal)
	p.mu.Unlock()
	if allowed {
		klog.Background().V(4).Info("Target accepted the candidate", "pod", klog.KObj(r.proxy), "target", r.target.Ref.String())
	} else {
		klog.Background().V(2).Info("Target refused the candidate", "pod", klog.KObj(r.proxy), "target", r.target.Ref.String(), "message", message)
	}
	p.tell(uid, allowed, message)
	// The booking is now on a node of the target (or gone): pods kept
	// aside by pods in flight may fit.
	p.requeuePending()
}

// decideLocked marks r decided and gives its place back; a refusal (not
// empty) has the pod avoid the target.
func (p *Plugin) decideLocked(uid types.UID, r *reservation, refusal string) {
	r.decided = true
	p.releaseLocked(r)
	if refusal != "" {
		p.refuseLocked(uid, r.target.Ref, refusal)
	}
}

// tell records the verdict of a decided attempt and hands it to the
// waiting pod.
func (p *Plugin) tell(uid types.UID, allowed bool, message string) {
	p.attempts.decided(uid, allowed, message)
	p.deliver(uid, allowed, message, 0)
}

func (p *Plugin) deliver(uid types.UID, allowed bool, message string, attempt int) {
	wp := p.handle.GetWaitingPod(uid)
	if wp == nil {
		if attempt < 100 {
			time.AfterFunc(20*time.Millisecond, func() { p.deliver(uid, allowed, message, attempt+1) })
		}
		return
	}
	if allowed {
		wp.Allow(Name)
	} else {
		wp.Reject(Name, message)
	}
}

// PostBind keeps the reservation briefly: the target's summary counts the
// delegate within its update interval (1s by default).
func (p *Plugin) PostBind(_ context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	p.attempts.bound(pod.UID)
	p.mu.Lock()
	if r := p.inflight[pod.UID]; r != nil {
		p.endLocked(r)
	}
	p.mu.Unlock()
	time.AfterFunc(3*time.Second, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if r := p.inflight[pod.UID]; r != nil && r.decided {
			delete(p.inflight, pod.UID)
		}
		delete(p.refused, pod.UID)
	})
}

func (p *Plugin) reservations(t *targets.Target, except types.UID) (placed []simulator.Reservation, unplaced []v1.ResourceList) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for uid, r := range p.inflight {
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

func (p *Plugin) refuseLocked(uid types.UID, ref targets.Ref, message string) {
	m := p.refused[uid]
	if m == nil {
		m = map[targets.Ref]refusal{}
		p.refused[uid] = m
	}
	m[ref] = refusal{until: time.Now().Add(p.args.RefusedTargetTTL.Duration), message: message}
}

func (p *Plugin) recentlyRefused(uid types.UID, ref targets.Ref) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.refused[uid][ref]
	if !ok {
		return "", false
	}
	if time.Now().After(r.until) {
		delete(p.refused[uid], ref)
		return "", false
	}
	return r.message, true
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
