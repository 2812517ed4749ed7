package clustersummary

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	resourcehelper "k8s.io/component-helpers/resource"
	fwk "k8s.io/kube-scheduler/framework"
	schedutil "k8s.io/kubernetes/pkg/scheduler/util"
	nodeutil "k8s.io/kubernetes/pkg/util/node"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// Build computes the ClusterSummary named name from the cluster's nodes and
// what the pods bound to them use (UsageOf). Admiralty's virtual nodes are
// left out: a cluster that targets itself would otherwise count the node
// that stands for itself, and every pod bound to it, twice. Terminal pods
// and pods of nodes not in nodes are ignored. The result is deterministic
// (nodes sorted by name, host ports sorted), so that an unchanged cluster
// gives an equal summary and no write.
func Build(name string, nodes []*corev1.Node, pods []*Usage) *v1alpha1.ClusterSummary {
	byName := map[string]*v1alpha1.NodeSummary{}
	ports := map[string]fwk.HostPortInfo{}
	s := &v1alpha1.ClusterSummary{}
	s.Name = name
	capacity := corev1.ResourceList{}
	allocatable := corev1.ResourceList{}
	for _, n := range nodes {
		if v1alpha1.IsVirtualNode(n) {
			continue
		}
		ns := nodeSummary(n)
		if ns.Ready {
			add(capacity, n.Status.Capacity)
			add(allocatable, n.Status.Allocatable)
		}
		s.Nodes = append(s.Nodes, ns)
	}
	sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].Name < s.Nodes[j].Name })
	for i := range s.Nodes {
		byName[s.Nodes[i].Name] = &s.Nodes[i]
	}
	for _, p := range pods {
		ns := byName[p.Node]
		if ns == nil || p.Terminal {
			continue
		}
		if ns.Requested == nil {
			ns.Requested = corev1.ResourceList{}
		}
		add(ns.Requested, p.Requests)
		ns.Pods++
		for _, port := range p.HostPorts {
			info := ports[ns.Name]
			if info == nil {
				info = fwk.HostPortInfo{}
				ports[ns.Name] = info
			}
			// Add fills in the defaults (TCP, 0.0.0.0) as the scheduler's
			// NodePorts plugin sees them.
			info.Add(port.HostIP, string(port.Protocol), port.HostPort)
		}
	}
	for node, info := range ports {
		byName[node].HostPorts = hostPortStrings(info)
	}
	if len(capacity) > 0 {
		s.Capacity = capacity
	}
	if len(allocatable) > 0 {
		s.Allocatable = allocatable
	}
	return s
}

// Equal tells whether two summaries say the same (metadata aside).
// Quantities compare by value, so "4" and "4000m" are equal, and a nil list
// equals an empty one.
func Equal(a, b *v1alpha1.ClusterSummary) bool {
	return apiequality.Semantic.DeepEqual(a.Capacity, b.Capacity) &&
		apiequality.Semantic.DeepEqual(a.Allocatable, b.Allocatable) &&
		apiequality.Semantic.DeepEqual(a.Nodes, b.Nodes)
}

// Requests is what a pod takes from its node's allocatable resources, as
// the scheduler's NodeResourcesFit counts it: the larger of the init
// containers' and the containers' requests (sidecars included), pod-level
// requests when set, the pod overhead, and the resources actually allocated
// to running containers after an in-place resize.
func Requests(p *corev1.Pod) corev1.ResourceList {
	return resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{
		UseStatusResources: true,
	})
}

// Usage is what a bound pod takes from its node, as the summary counts it,
// and all the summary keeps of it. The pods' informer turns each pod into
// its Usage as it arrives (UsageOf is its transform), so that the cache of
// every bound pod of the cluster holds a name, a node and a few quantities
// instead of pods, and a summary adds them up instead of walking every
// pod's containers at each computation.
type Usage struct {
	// Only the namespace and name, the cache's key.
	metav1.ObjectMeta
	// Node is the pod's spec.nodeName.
	Node string
	// Terminal is true once the pod has Succeeded or Failed.
	Terminal bool
	// Requests is Requests(pod).
	Requests corev1.ResourceList
	// HostPorts are the host ports of its containers.
	HostPorts []corev1.ContainerPort
}

// UsageOf computes a pod's Usage.
func UsageOf(p *corev1.Pod) *Usage {
	u := &Usage{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name},
		Node:       p.Spec.NodeName,
		Terminal:   isTerminal(p),
		Requests:   Requests(p),
		HostPorts:  schedutil.GetHostPorts(p),
	}
	if len(u.Requests) == 0 {
		u.Requests = nil
	}
	return u
}

// GetObjectKind makes a Usage a runtime.Object, as informers' caches hold.
func (u *Usage) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject makes a Usage a runtime.Object.
func (u *Usage) DeepCopyObject() runtime.Object {
	c := &Usage{Node: u.Node, Terminal: u.Terminal, Requests: u.Requests.DeepCopy()}
	u.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	if u.HostPorts != nil {
		c.HostPorts = append([]corev1.ContainerPort(nil), u.HostPorts...)
	}
	return c
}

// sameUsage tells whether two usages count the same in a summary.
func sameUsage(a, b *Usage) bool {
	return a.Node == b.Node && a.Terminal == b.Terminal &&
		apiequality.Semantic.DeepEqual(a.Requests, b.Requests) &&
		apiequality.Semantic.DeepEqual(a.HostPorts, b.HostPorts)
}

func nodeSummary(n *corev1.Node) v1alpha1.NodeSummary {
	ns := v1alpha1.NodeSummary{
		Name:          n.Name,
		Ready:         nodeutil.IsNodeReady(n),
		Unschedulable: n.Spec.Unschedulable,
	}
	if len(n.Labels) > 0 {
		ns.Labels = make(map[string]string, len(n.Labels))
		for k, v := range n.Labels {
			ns.Labels[k] = v
		}
	}
	if len(n.Spec.Taints) > 0 {
		ns.Taints = make([]corev1.Taint, len(n.Spec.Taints))
		for i := range n.Spec.Taints {
			n.Spec.Taints[i].DeepCopyInto(&ns.Taints[i])
		}
	}
	if len(n.Status.Allocatable) > 0 {
		ns.Allocatable = n.Status.Allocatable.DeepCopy()
	}
	return ns
}

func isTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// hostPortStrings renders ports as sorted "protocol/ip/port" strings, the
// form plugins/simulator reads back.
func hostPortStrings(info fwk.HostPortInfo) []string {
	var out []string
	for ip, pps := range info {
		for pp := range pps {
			out = append(out, fmt.Sprintf("%s/%s/%d", pp.Protocol, ip, pp.Port))
		}
	}
	sort.Strings(out)
	return out
}

func add(to, l corev1.ResourceList) {
	for name, q := range l {
		sum := to[name]
		sum.Add(q)
		to[name] = sum
	}
}
