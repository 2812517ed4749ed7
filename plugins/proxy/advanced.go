package proxy

// Advanced scheduling: topology spread across clusters, preferred node
// affinity, preemption in a target, no-reservation pods, and the requeue of
// pending proxies when a target frees room.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	plfeature "k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/podtopologyspread"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// Weights of the parts of a target's score, as the upstream default
// profile weighs NodeResourcesFit, NodeAffinity and PodTopologySpread.
const (
	weightCapacity = 1
	weightAffinity = 2
	weightSpread   = 2
)

// newSpreadPlugin is the upstream PodTopologySpread plugin, run by
// AdmiraltyProxy over the virtual nodes for the constraints that spread a
// pod over clusters. Defaulting "List" without defaults: only the pod's
// own constraints count.
func newSpreadPlugin(ctx context.Context, h fwk.Handle) (*podtopologyspread.PodTopologySpread, error) {
	pl, err := podtopologyspread.New(ctx, &config.PodTopologySpreadArgs{DefaultingType: config.ListDefaulting}, h,
		plfeature.NewSchedulerFeaturesFromGates(utilfeature.DefaultFeatureGate))
	if err != nil {
		return nil, fmt.Errorf("%s: topology spread across clusters: %w", Name, err)
	}
	return pl.(*podtopologyspread.PodTopologySpread), nil
}

// AcrossClusters returns the topology spread constraints of the original
// pod that spread it over clusters: those whose topologyKey every virtual
// node the pod may use carries (the region all of a target's nodes share,
// multicluster.admiralty.io/cluster-name, ...). kubernetes.io/hostname
// names a node in any cluster, never a cluster. The others are left to the
// chosen target's scheduler, which spreads the delegate over its nodes.
func AcrossClusters(constraints []v1.TopologySpreadConstraint, vnodes []*v1.Node) []v1.TopologySpreadConstraint {
	if len(vnodes) == 0 {
		return nil
	}
	var out []v1.TopologySpreadConstraint
	for _, c := range constraints {
		if c.TopologyKey == v1.LabelHostname {
			continue
		}
		all := true
		for _, n := range vnodes {
			if _, ok := n.Labels[c.TopologyKey]; !ok {
				all = false
				break
			}
		}
		if all {
			out = append(out, c)
		}
	}
	return out
}

// withoutKeys returns the constraints whose topologyKey is not in keys.
func withoutKeys(constraints []v1.TopologySpreadConstraint, keys map[string]bool) []v1.TopologySpreadConstraint {
	var out []v1.TopologySpreadConstraint
	for _, c := range constraints {
		if !keys[c.TopologyKey] {
			out = append(out, c)
		}
	}
	return out
}

// spreadPod is the proxy as the upstream PodTopologySpread plugin must see
// it: the proxy's labels and node selector, the across-cluster constraints
// of the original, and a node affinity to the virtual nodes it may use, so
// that the domains are the clusters this pod can go to (virtual nodes of
// other namespaces' Targets are no domain of its).
func spreadPod(proxy *v1.Pod, constraints []v1.TopologySpreadConstraint, vnodes []*v1.Node) *v1.Pod {
	sp := proxy.DeepCopy()
	sp.Spec.TopologySpreadConstraints = constraints
	names := make([]string, 0, len(vnodes))
	for _, n := range vnodes {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	sp.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
			// By the hostname label, which a virtual node sets to its name:
			// a field selector on metadata.name takes a single value.
			MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: names}},
		}}},
	}}
	return sp
}

// eligibleVirtualNodes are the virtual nodes whose target may serve pods
// of namespace ns.
func (p *Plugin) eligibleVirtualNodes(ns string, nodes []fwk.NodeInfo) []*v1.Node {
	var out []*v1.Node
	for _, ni := range nodes {
		n := ni.Node()
		if !v1alpha1.IsVirtualNode(n) {
			continue
		}
		t := p.targetOf(n.Name)
		if t == nil || (t.Scope != "" && t.Scope != ns) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// prepareAdvanced fills the cycle state's advanced parts in PreFilter.
func (p *Plugin) prepareAdvanced(ctx context.Context, s *cycleState, pod *v1.Pod, nodes []fwk.NodeInfo) *fwk.Status {
	_, s.noReservation = s.source.Annotations[v1alpha1.AnnotationNoReservation]
	s.canPreempt = CanPreempt(pod)
	if a := s.source.Spec.Affinity; a != nil && a.NodeAffinity != nil && len(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) > 0 {
		terms, err := nodeaffinity.NewPreferredSchedulingTerms(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
		if err != nil {
			return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("preferred node affinity: %v", err))
		}
		s.preferred = terms
	}
	if len(s.source.Spec.TopologySpreadConstraints) == 0 || p.spread == nil {
		return nil
	}
	vnodes := p.eligibleVirtualNodes(pod.Namespace, nodes)
	across := AcrossClusters(s.source.Spec.TopologySpreadConstraints, vnodes)
	if len(across) == 0 {
		return nil
	}
	s.acrossKeys = map[string]bool{}
	for _, c := range across {
		s.acrossKeys[c.TopologyKey] = true
	}
	s.spread = spreadPod(pod, across, vnodes)
	s.spreadState = framework.NewCycleState()
	if _, st := p.spread.PreFilter(ctx, s.spreadState, s.spread, nodes); !st.IsSuccess() && !st.IsSkip() {
		return st
	}
	return nil
}

// CanPreempt tells whether a proxy may have the target's scheduler preempt
// pods for its delegate: a positive priority (from its priorityClassName)
// and a preemption policy other than Never.
func CanPreempt(proxy *v1.Pod) bool {
	if proxy.Spec.Priority == nil || *proxy.Spec.Priority <= 0 {
		return false
	}
	return proxy.Spec.PreemptionPolicy == nil || *proxy.Spec.PreemptionPolicy != v1.PreemptNever
}

// PreScore lets the upstream topology spread plugin count the pods of the
// soft (ScheduleAnyway) across-cluster constraints. It never skips: Score
// also ranks by capacity and node affinity.
func (p *Plugin) PreScore(ctx context.Context, state fwk.CycleState, _ *v1.Pod, nodes []fwk.NodeInfo) *fwk.Status {
	s, err := readState(state)
	if err != nil {
		return fwk.AsStatus(err)
	}
	if s.spread == nil {
		return nil
	}
	st := p.spread.PreScore(ctx, s.spreadState, s.spread, nodes)
	if st.IsSkip() {
		return nil
	}
	if !st.IsSuccess() {
		return st
	}
	s.spreadScoring = true
	return nil
}

// ScoreExtensions: NormalizeScore combines the parts of the scores.
func (p *Plugin) ScoreExtensions() fwk.ScoreExtensions { return p }

// NormalizeScore combines, per target, the capacity score (scoringPolicy),
// the preferred node affinity (the best node of the target, relative to the
// best target) and the soft topology spread across clusters, weighted 1, 2
// and 2 (the weights of NodeResourcesFit, NodeAffinity and PodTopologySpread
// in the upstream default profile), each part counted only when the pod
// asks for it; then applies targetWeights. A target where the pod fits only
// once pods make room (preemption, no-reservation) scores 0, after every
// target where it fits now.
func (p *Plugin) NormalizeScore(ctx context.Context, state fwk.CycleState, pod *v1.Pod, scores fwk.NodeScoreList) *fwk.Status {
	s, err := readState(state)
	if err != nil {
		return fwk.AsStatus(err)
	}
	var spread map[string]int64
	if s.spreadScoring {
		list := make(fwk.NodeScoreList, len(scores))
		s.mu.Lock()
		for i, sc := range scores {
			list[i] = fwk.NodeScore{Name: sc.Name, Score: s.spreadRaw[sc.Name]}
		}
		s.mu.Unlock()
		if st := p.spread.NormalizeScore(ctx, s.spreadState, s.spread, list); !st.IsSuccess() {
			return st
		}
		spread = map[string]int64{}
		for _, sc := range list {
			spread[sc.Name] = sc.Score
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var maxAffinity int64
	for _, sc := range scores {
		maxAffinity = max(maxAffinity, s.affinity[sc.Name])
	}
	logger := klog.FromContext(ctx)
	for i := range scores {
		name := scores[i].Name
		capacity := scores[i].Score
		if s.later[name] {
			scores[i].Score = 0
			logger.V(4).Info("Target score", "pod", klog.KObj(pod), "node", name, "score", 0, "fitsOnlyOnceRoomIsMade", true)
			continue
		}
		parts := Parts{Capacity: capacity, Affinity: -1, Spread: -1}
		if s.preferred != nil {
			parts.Affinity = 0
			if maxAffinity > 0 {
				parts.Affinity = s.affinity[name] * fwk.MaxNodeScore / maxAffinity
			}
		}
		if spread != nil {
			parts.Spread = spread[name]
		}
		weight := int64(100)
		if t := p.targetOf(name); t != nil {
			if w, ok := p.args.TargetWeights[t.Ref.Name]; ok {
				weight = w
			}
		}
		scores[i].Score = parts.Combine(weight)
		logger.V(4).Info("Target score", "pod", klog.KObj(pod), "node", name, "score", scores[i].Score,
			"capacity", parts.Capacity, "nodeAffinity", parts.Affinity, "topologySpread", parts.Spread, "weight", weight)
	}
	return nil
}

// Parts of a target's score, each from 0 to 100; -1 when the pod does not
// ask for that part.
type Parts struct {
	Capacity, Affinity, Spread int64
}

// Combine weighs the parts and applies a target weight (percent). A target
// where the pod fits now scores at least 1 (before its weight), above the
// targets where it fits only once room is made.
func (pt Parts) Combine(weight int64) int64 {
	num, den := weightCapacity*pt.Capacity, int64(weightCapacity)
	if pt.Affinity >= 0 {
		num += weightAffinity * pt.Affinity
		den += weightAffinity
	}
	if pt.Spread >= 0 {
		num += weightSpread * pt.Spread
		den += weightSpread
	}
	score := 1 + (num/den)*(fwk.MaxNodeScore-1)/fwk.MaxNodeScore
	return score * weight / 100
}

// affinityScore is the best preferred node affinity score among nodes.
func affinityScore(terms *nodeaffinity.PreferredSchedulingTerms, nodes []fwk.NodeInfo) int64 {
	var best int64
	for _, n := range nodes {
		best = max(best, terms.Score(n.Node()))
	}
	return best
}

// summaryHandler requeues pending proxies when a target frees room.
func (p *Plugin) summaryHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { p.requeuePending() },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*v1alpha1.ClusterSummary)
			n, ok2 := newObj.(*v1alpha1.ClusterSummary)
			if !ok1 || !ok2 || Freed(o, n) {
				p.requeuePending()
			}
		},
	}
}

// Freed tells whether a target's summary changed in a way that may let a
// pending pod fit: a node appeared or changed (labels, taints, readiness,
// allocatable), or pods left (less requested, fewer pods or host ports).
// More pods alone never do.
func Freed(old, cur *v1alpha1.ClusterSummary) bool {
	before := map[string]*v1alpha1.NodeSummary{}
	for i := range old.Nodes {
		before[old.Nodes[i].Name] = &old.Nodes[i]
	}
	for i := range cur.Nodes {
		n := &cur.Nodes[i]
		o, ok := before[n.Name]
		if !ok {
			return true
		}
		if !equality.Semantic.DeepEqual(o.Labels, n.Labels) || !equality.Semantic.DeepEqual(o.Taints, n.Taints) ||
			o.Ready != n.Ready || o.Unschedulable != n.Unschedulable || !equality.Semantic.DeepEqual(o.Allocatable, n.Allocatable) {
			return true
		}
		if n.Pods < o.Pods || len(n.HostPorts) < len(o.HostPorts) {
			return true
		}
		for name, q := range o.Requested {
			if c, ok := n.Requested[name]; !ok || c.Cmp(q) < 0 {
				return true
			}
		}
	}
	return false
}

// requeuePending moves the proxies that fit nowhere back to the active
// queue, at most once a second: the scheduler does not watch the targets'
// summaries, the plugin does.
func (p *Plugin) requeuePending() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.requeueScheduled || len(p.pending) == 0 {
		return
	}
	p.requeueScheduled = true
	p.clock.AfterFunc(time.Second, func() { go p.activatePending() })
}

func (p *Plugin) activatePending() {
	lister := p.handle.SharedInformerFactory().Core().V1().Pods().Lister()
	pods := map[string]*v1.Pod{}
	p.mu.Lock()
	p.requeueScheduled = false
	for uid, pod := range p.pending {
		cur, err := lister.Pods(pod.Namespace).Get(pod.Name)
		if err != nil || cur.UID != uid || cur.Spec.NodeName != "" || cur.DeletionTimestamp != nil {
			delete(p.pending, uid)
			continue
		}
		pods[pod.Namespace+"/"+pod.Name] = cur
	}
	p.mu.Unlock()
	if len(pods) > 0 {
		klog.Background().V(4).Info("Requeued pending proxies: a target made room", "count", len(pods))
		p.handle.Activate(klog.Background(), pods)
	}
}

// activate moves the pod to the scheduler's active queue; a pod still in
// its scheduling or binding cycle goes back to the queue through its
// backoff when that cycle ends.
func (p *Plugin) activate(pod *v1.Pod) {
	p.handle.Activate(klog.Background(), map[string]*v1.Pod{pod.Namespace + "/" + pod.Name: pod})
}

// activateIfPending activates the proxy if it still exists unbound.
func (p *Plugin) activateIfPending(pod *v1.Pod) {
	lister := p.handle.SharedInformerFactory().Core().V1().Pods().Lister()
	if cur, err := lister.Pods(pod.Namespace).Get(pod.Name); err == nil && cur.UID == pod.UID && cur.Spec.NodeName == "" {
		p.activate(cur)
	}
}

// notePending and notePlaced track the proxies to requeue.
func (p *Plugin) notePending(pod *v1.Pod) {
	p.mu.Lock()
	p.pending[pod.UID] = pod
	p.mu.Unlock()
}

func (p *Plugin) notePlacedLocked(uid types.UID) { delete(p.pending, uid) }

// reasonsOf joins a status's reasons.
func reasonsOf(st *fwk.Status) string { return strings.Join(st.Reasons(), ", ") }
