// Package simulator runs the upstream scheduler's filter plugins for a pod
// against the nodes of a target cluster, held in memory, the way
// cluster-autoscaler's simulator does against its own snapshot. The nodes
// come from the target's ClusterSummary: labels, taints, allocatable minus
// what is already requested, host ports in use. Nothing here calls an API
// server, so a scheduling cycle never waits on a remote cluster.
package simulator

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/latest"
	"k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/names"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// FilterPlugins are the upstream plugins a pod is simulated with: those
// that decide from a node and the pod alone. Pod (anti-)affinity and
// topology spread inside a target need the target's pods, which a source
// does not see; the target's own scheduler enforces them for the candidate.
var FilterPlugins = []string{
	names.NodeUnschedulable,
	names.NodeName,
	names.TaintToleration,
	names.NodeAffinity,
	names.NodePorts,
	names.NodeResourcesFit,
}

// Simulator runs FilterPlugins. It is safe for concurrent use.
type Simulator struct {
	fw framework.Framework
}

// New builds the simulator's framework.
func New(ctx context.Context) (*Simulator, error) {
	cfg, err := latest.Default()
	if err != nil {
		return nil, err
	}
	profile := cfg.Profiles[0].DeepCopy()
	profile.SchedulerName = "admiralty-simulator"
	enabled := func(ps ...string) config.PluginSet {
		var set config.PluginSet
		for _, p := range ps {
			set.Enabled = append(set.Enabled, config.Plugin{Name: p})
		}
		return set
	}
	profile.Plugins = &config.Plugins{
		QueueSort: enabled(names.PrioritySort),
		Bind:      enabled(names.DefaultBinder),
		PreFilter: enabled(FilterPlugins...),
		Filter:    enabled(FilterPlugins...),
	}
	fw, err := frameworkruntime.NewFramework(ctx, plugins.NewInTreeRegistry(), profile,
		frameworkruntime.WithSnapshotSharedLister(cache.NewEmptySnapshot()))
	if err != nil {
		return nil, fmt.Errorf("simulation framework: %w", err)
	}
	return &Simulator{fw: fw}, nil
}

// Result of a simulation.
type Result struct {
	// Fits lists the nodes where the pod fits.
	Fits []fwk.NodeInfo
	// Reason explains a pod that fits nowhere, in the scheduler's words:
	// "0/3 nodes are available: 3 Insufficient cpu."
	Reason string
}

// Simulate runs the filter plugins for pod on each node.
func (s *Simulator) Simulate(ctx context.Context, pod *corev1.Pod, nodes []fwk.NodeInfo) Result {
	state := framework.NewCycleState()
	reasons := map[string]int{}
	_, status, _ := s.fw.RunPreFilterPlugins(ctx, state, pod)
	if !status.IsSuccess() {
		for _, r := range status.Reasons() {
			reasons[r] += len(nodes)
		}
		return Result{Reason: format(len(nodes), reasons)}
	}
	var res Result
	for _, n := range nodes {
		st := s.fw.RunFilterPlugins(ctx, state, pod, n)
		if st.IsSuccess() {
			res.Fits = append(res.Fits, n)
			continue
		}
		for _, r := range st.Reasons() {
			reasons[r]++
		}
	}
	if len(res.Fits) == 0 {
		res.Reason = format(len(nodes), reasons)
	}
	return res
}

func format(total int, reasons map[string]int) string {
	if total == 0 {
		return "0/0 nodes are available: no schedulable node."
	}
	parts := make([]string, 0, len(reasons))
	for r, n := range reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	return fmt.Sprintf("0/%d nodes are available: %s.", total, strings.Join(parts, ", "))
}

// Reservation is a pod that this source has sent to the target and that
// the target's summary may not count yet.
type Reservation struct {
	// NodeName, once the target placed the candidate; empty before.
	NodeName string
	Requests corev1.ResourceList
}

// NodeInfos turns a summary into node infos. Each node's allocatable is
// reduced by what its pods request and by the reservations placed on it, so
// that NodeResourcesFit compares the pod with what is left; a synthetic pod
// holds the node's host ports. Nodes that are not Ready are left out.
func NodeInfos(summary *v1alpha1.ClusterSummary, reservations []Reservation) []fwk.NodeInfo {
	if summary == nil {
		return nil
	}
	byNode := map[string]corev1.ResourceList{}
	placed := map[string]int64{}
	for _, r := range reservations {
		if r.NodeName == "" {
			continue
		}
		add(byNode, r.NodeName, r.Requests)
		placed[r.NodeName]++
	}
	out := make([]fwk.NodeInfo, 0, len(summary.Nodes))
	for _, ns := range summary.Nodes {
		if !ns.Ready {
			continue
		}
		free := ns.Allocatable.DeepCopy()
		subtract(free, ns.Requested)
		subtract(free, byNode[ns.Name])
		podsLeft := ns.Allocatable.Pods().Value() - int64(ns.Pods) - placed[ns.Name]
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: ns.Name, Labels: ns.Labels, UID: types.UID("summary-" + ns.Name)},
			Spec:       corev1.NodeSpec{Taints: ns.Taints, Unschedulable: ns.Unschedulable},
			Status: corev1.NodeStatus{
				Capacity:    ns.Allocatable,
				Allocatable: free,
				Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			},
		}
		ni := framework.NewNodeInfo()
		ni.SetNode(node)
		if len(ns.HostPorts) > 0 {
			ni.AddPod(hostPortsPod(ns.Name, ns.HostPorts))
			podsLeft--
		}
		if podsLeft < 0 {
			podsLeft = 0
		}
		// NodeResourcesFit counts the node info's pods against allocatable
		// pods; the synthetic pod is counted above.
		node.Status.Allocatable[corev1.ResourcePods] = *resource.NewQuantity(podsLeft+int64(len(ni.GetPods())), resource.DecimalSI)
		ni.SetNode(node)
		out = append(out, ni)
	}
	return out
}

// Free sums what is left on the given nodes for the resources of requests.
func Free(nodes []fwk.NodeInfo) corev1.ResourceList {
	total := corev1.ResourceList{}
	for _, n := range nodes {
		for name, q := range n.Node().Status.Allocatable {
			if name == corev1.ResourcePods {
				continue
			}
			t := total[name]
			t.Add(q)
			total[name] = t
		}
	}
	return total
}

func hostPortsPod(node string, ports []string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "host-ports-in-use", Namespace: "summary", UID: types.UID("summary-ports-" + node)},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "ports"}}},
	}
	for _, p := range ports {
		// "protocol/ip/port"
		parts := strings.SplitN(p, "/", 3)
		if len(parts) != 3 {
			continue
		}
		var port int32
		if _, err := fmt.Sscan(parts[2], &port); err != nil || port <= 0 {
			continue
		}
		pod.Spec.Containers[0].Ports = append(pod.Spec.Containers[0].Ports, corev1.ContainerPort{
			Protocol: corev1.Protocol(parts[0]), HostIP: parts[1], HostPort: port, ContainerPort: port,
		})
	}
	return pod
}

func add(m map[string]corev1.ResourceList, node string, l corev1.ResourceList) {
	cur := m[node]
	if cur == nil {
		cur = corev1.ResourceList{}
		m[node] = cur
	}
	for name, q := range l {
		c := cur[name]
		c.Add(q)
		cur[name] = c
	}
}

func subtract(from, l corev1.ResourceList) {
	for name, q := range l {
		c, ok := from[name]
		if !ok {
			continue
		}
		c.Sub(q)
		if c.Sign() < 0 {
			c = resource.Quantity{}
		}
		from[name] = c
	}
}

// EmptyNodeInfos turns a summary into node infos as if no pod ran on the
// nodes: each node offers its whole allocatable and no host port is taken.
// It answers "could the pod fit here if pods made room?": for a pod that may
// preempt others in the target, and for a pod that queues in its target
// (multicluster.admiralty.io/no-reservation). Nodes that are not Ready are
// left out.
func EmptyNodeInfos(summary *v1alpha1.ClusterSummary) []fwk.NodeInfo {
	if summary == nil {
		return nil
	}
	empty := summary.DeepCopy()
	for i := range empty.Nodes {
		empty.Nodes[i].Requested = nil
		empty.Nodes[i].Pods = 0
		empty.Nodes[i].HostPorts = nil
	}
	return NodeInfos(empty, nil)
}
