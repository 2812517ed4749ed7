package clustersummary

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

func q(s string) resource.Quantity { return resource.MustParse(s) }

func node(name string, ready bool, cpu string, labels map[string]string) *corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: q(cpu), corev1.ResourcePods: q("110")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: q(cpu), corev1.ResourcePods: q("110")},
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
		},
	}
}

func virtualNode(name string) *corev1.Node {
	n := node(name, true, "100", map[string]string{v1alpha1.LabelVirtualKubeletProvider: v1alpha1.ProviderName})
	n.Spec.Taints = []corev1.Taint{{Key: v1alpha1.LabelVirtualKubeletProvider, Value: v1alpha1.ProviderName, Effect: corev1.TaintEffectNoSchedule}}
	return n
}

func boundPod(name, nodeName, cpu string, phase corev1.PodPhase, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{
			Name:      "main",
			Ports:     ports,
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q(cpu)}},
		}}},
		Status: corev1.PodStatus{Phase: phase},
	}
}

func usages(pods []*corev1.Pod) []*Usage {
	out := make([]*Usage, len(pods))
	for i, p := range pods {
		out[i] = UsageOf(p)
	}
	return out
}

func list(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = q(kv[i+1])
	}
	return l
}

func TestBuild(t *testing.T) {
	sidecar := corev1.ContainerRestartPolicyAlways
	withInit := boundPod("init", "a", "1", corev1.PodRunning)
	withInit.Spec.Containers = append(withInit.Spec.Containers, corev1.Container{Name: "second",
		Resources: corev1.ResourceRequirements{Requests: list("cpu", "500m")}})
	withInit.Spec.InitContainers = []corev1.Container{{Name: "setup",
		Resources: corev1.ResourceRequirements{Requests: list("cpu", "2")}}}
	withInit.Spec.Overhead = list("cpu", "100m")
	withSidecar := boundPod("sidecar", "a", "1", corev1.PodRunning)
	withSidecar.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: &sidecar,
		Ports:     []corev1.ContainerPort{{HostPort: 15000, ContainerPort: 15000}},
		Resources: corev1.ResourceRequirements{Requests: list("cpu", "250m")}}}
	tainted := node("b", true, "2", nil)
	tainted.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
	tainted.Spec.Unschedulable = true

	cases := []struct {
		name  string
		nodes []*corev1.Node
		pods  []*corev1.Pod
		want  v1alpha1.ClusterSummary
	}{{
		name:  "a cluster without nodes has an empty summary",
		nodes: nil,
		want:  v1alpha1.ClusterSummary{},
	}, {
		name:  "capacity and allocatable are summed over Ready nodes, and every node is listed",
		nodes: []*corev1.Node{node("a", true, "4", nil), node("b", true, "4", nil), node("c", false, "4", nil)},
		want: v1alpha1.ClusterSummary{
			Capacity:    list("cpu", "8", "pods", "220"),
			Allocatable: list("cpu", "8", "pods", "220"),
			Nodes: []v1alpha1.NodeSummary{
				{Name: "a", Ready: true, Allocatable: list("cpu", "4", "pods", "110")},
				{Name: "b", Ready: true, Allocatable: list("cpu", "4", "pods", "110")},
				{Name: "c", Ready: false, Allocatable: list("cpu", "4", "pods", "110")},
			},
		},
	}, {
		name:  "virtual nodes and the proxies bound to them are left out",
		nodes: []*corev1.Node{node("a", true, "4", nil), virtualNode("admiralty-cluster-self")},
		pods:  []*corev1.Pod{boundPod("proxy", "admiralty-cluster-self", "1", corev1.PodRunning)},
		want: v1alpha1.ClusterSummary{
			Capacity:    list("cpu", "4", "pods", "110"),
			Allocatable: list("cpu", "4", "pods", "110"),
			Nodes:       []v1alpha1.NodeSummary{{Name: "a", Ready: true, Allocatable: list("cpu", "4", "pods", "110")}},
		},
	}, {
		name:  "labels, taints and cordoning are reported per node",
		nodes: []*corev1.Node{tainted},
		want: v1alpha1.ClusterSummary{
			Capacity:    list("cpu", "2", "pods", "110"),
			Allocatable: list("cpu", "2", "pods", "110"),
			Nodes: []v1alpha1.NodeSummary{{Name: "b", Ready: true, Unschedulable: true,
				Taints:      []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}},
				Allocatable: list("cpu", "2", "pods", "110")}},
		},
	}, {
		name:  "requests and pod counts sum the non-terminal pods of each node, terminal pods and pods of unknown nodes are ignored",
		nodes: []*corev1.Node{node("a", true, "4", map[string]string{"topology.kubernetes.io/region": "eu"}), node("b", true, "4", nil)},
		pods: []*corev1.Pod{
			boundPod("running", "a", "1", corev1.PodRunning),
			boundPod("pending", "a", "250m", corev1.PodPending),
			boundPod("done", "a", "2", corev1.PodSucceeded),
			boundPod("failed", "b", "2", corev1.PodFailed),
			boundPod("elsewhere", "gone", "2", corev1.PodRunning),
		},
		want: v1alpha1.ClusterSummary{
			Capacity:    list("cpu", "8", "pods", "220"),
			Allocatable: list("cpu", "8", "pods", "220"),
			Nodes: []v1alpha1.NodeSummary{
				{Name: "a", Ready: true, Labels: map[string]string{"topology.kubernetes.io/region": "eu"},
					Allocatable: list("cpu", "4", "pods", "110"), Requested: list("cpu", "1250m"), Pods: 2},
				{Name: "b", Ready: true, Allocatable: list("cpu", "4", "pods", "110")},
			},
		},
	}, {
		name:  "a pod requests the larger of its init containers and its containers, plus sidecars and overhead, as the scheduler counts it",
		nodes: []*corev1.Node{node("a", true, "4", nil)},
		pods:  []*corev1.Pod{withInit, withSidecar},
		want: v1alpha1.ClusterSummary{
			Capacity:    list("cpu", "4", "pods", "110"),
			Allocatable: list("cpu", "4", "pods", "110"),
			Nodes: []v1alpha1.NodeSummary{{Name: "a", Ready: true, Allocatable: list("cpu", "4", "pods", "110"),
				// init: max(2, 1+0.5) + 0.1 overhead; sidecar: 1 + 0.25.
				Requested: list("cpu", "3350m"), Pods: 2, HostPorts: []string{"TCP/0.0.0.0/15000"}}},
		},
	}, {
		name:  "host ports default to TCP on every address and are sorted",
		nodes: []*corev1.Node{node("a", true, "4", nil)},
		pods: []*corev1.Pod{
			boundPod("web", "a", "0", corev1.PodRunning, corev1.ContainerPort{HostPort: 8080, ContainerPort: 80}),
			boundPod("dns", "a", "0", corev1.PodRunning,
				corev1.ContainerPort{HostPort: 53, ContainerPort: 53, Protocol: corev1.ProtocolUDP, HostIP: "10.0.0.1"},
				corev1.ContainerPort{ContainerPort: 9153}),
		},
		want: v1alpha1.ClusterSummary{
			Capacity:    list("cpu", "4", "pods", "110"),
			Allocatable: list("cpu", "4", "pods", "110"),
			Nodes: []v1alpha1.NodeSummary{{Name: "a", Ready: true, Allocatable: list("cpu", "4", "pods", "110"),
				Requested: list("cpu", "0"), Pods: 2, HostPorts: []string{"TCP/0.0.0.0/8080", "UDP/10.0.0.1/53"}}},
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Build("c1", tc.nodes, usages(tc.pods))
			tc.want.Name = "c1"
			if diff := cmp.Diff(&tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Build() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	nodes := []*corev1.Node{node("c", true, "4", nil), node("a", true, "4", nil), node("b", true, "4", nil)}
	pods := []*corev1.Pod{
		boundPod("x", "a", "1", corev1.PodRunning, corev1.ContainerPort{HostPort: 81, ContainerPort: 81}),
		boundPod("y", "a", "1", corev1.PodRunning, corev1.ContainerPort{HostPort: 80, ContainerPort: 80}),
		boundPod("z", "c", "1", corev1.PodRunning),
	}
	want := Build("c1", nodes, usages(pods))
	reversedNodes := []*corev1.Node{nodes[2], nodes[1], nodes[0]}
	reversedPods := []*corev1.Pod{pods[2], pods[1], pods[0]}
	for range 20 {
		got := Build("c1", reversedNodes, usages(reversedPods))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Build() depends on the order of its input (-want +got):\n%s", diff)
		}
	}
	var names []string
	for _, n := range want.Nodes {
		names = append(names, n.Name)
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, names); diff != "" {
		t.Errorf("node order (-want +got):\n%s", diff)
	}
}

func TestEqual(t *testing.T) {
	base := func() *v1alpha1.ClusterSummary {
		return &v1alpha1.ClusterSummary{
			Allocatable: list("cpu", "4"),
			Nodes:       []v1alpha1.NodeSummary{{Name: "a", Ready: true, Allocatable: list("cpu", "4")}},
		}
	}
	cases := []struct {
		name   string
		change func(s *v1alpha1.ClusterSummary)
		want   bool
	}{
		{name: "an identical summary is equal", change: func(*v1alpha1.ClusterSummary) {}, want: true},
		{name: "a quantity written another way is equal", change: func(s *v1alpha1.ClusterSummary) {
			s.Allocatable = list("cpu", "4000m")
		}, want: true},
		{name: "an empty list equals a missing one", change: func(s *v1alpha1.ClusterSummary) {
			s.Capacity = corev1.ResourceList{}
			s.Nodes[0].HostPorts = []string{}
		}, want: true},
		{name: "metadata does not count", change: func(s *v1alpha1.ClusterSummary) {
			s.ResourceVersion = "42"
		}, want: true},
		{name: "more requested on a node is a change", change: func(s *v1alpha1.ClusterSummary) {
			s.Nodes[0].Requested = list("cpu", "1")
		}, want: false},
		{name: "a node that became NotReady is a change", change: func(s *v1alpha1.ClusterSummary) {
			s.Nodes[0].Ready = false
		}, want: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := base()
			tc.change(b)
			if got := Equal(base(), b); got != tc.want {
				t.Errorf("Equal() = %v, want %v", got, tc.want)
			}
		})
	}
}

// The cache's usages give the summary of the whole pods: requests with a
// sidecar, an init container, overhead and an in-place resize, host ports,
// terminal phases; and they keep nothing else of the pods.
func TestUsageOfKeepsWhatTheSummaryReads(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	full := []*corev1.Pod{
		boundPod("a", "n1", "500m", corev1.PodRunning, corev1.ContainerPort{ContainerPort: 80, HostPort: 8080}),
		boundPod("done", "n1", "2", corev1.PodSucceeded),
	}
	p := boundPod("b", "n2", "1", corev1.PodRunning)
	p.Labels = map[string]string{"app": "b"}
	p.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	p.UID = "uid-b"
	p.Spec.Containers[0].Image = "nginx"
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "b"}}
	p.Spec.InitContainers = []corev1.Container{
		{Name: "sidecar", RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: list("cpu", "250m")}},
		{Name: "init", Resources: corev1.ResourceRequirements{Requests: list("cpu", "3", "memory", "1Gi")}},
	}
	p.Spec.Overhead = list("cpu", "100m")
	p.Spec.Volumes = []corev1.Volume{{Name: "data"}}
	// Resized, not yet actuated: the larger of spec and status counts.
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", AllocatedResources: list("cpu", "1500m"), Resources: &corev1.ResourceRequirements{Requests: list("cpu", "1500m")}}}
	full = append(full, p)

	var cached []*Usage
	for _, p := range full {
		obj, err := usageOf(p.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		u, ok := obj.(*Usage)
		if !ok {
			t.Fatalf("%s: the transform gave a %T", p.Name, obj)
		}
		if diff := cmp.Diff(metav1.ObjectMeta{Namespace: "default", Name: p.Name}, u.ObjectMeta); diff != "" {
			t.Errorf("%s: metadata kept beyond the key (-want +got):\n%s", p.Name, diff)
		}
		// A Usage met again (a resync) passes as it is.
		if again, _ := usageOf(u); again != any(u) {
			t.Errorf("%s: a Usage was transformed again", p.Name)
		}
		cached = append(cached, u)
	}
	want := map[string]Usage{
		"a":    {Node: "n1", Requests: list("cpu", "500m"), HostPorts: []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}},
		"done": {Node: "n1", Terminal: true, Requests: list("cpu", "2")},
		// The init container's 3 + the sidecar's 250m + overhead 100m
		// against the resized 1500m + 250m + 100m.
		"b": {Node: "n2", Requests: list("cpu", "3350m", "memory", "1Gi")},
	}
	for _, u := range cached {
		w := want[u.Name]
		w.ObjectMeta = u.ObjectMeta
		if !sameUsage(&w, u) {
			t.Errorf("%s: usage %+v, want %+v", u.Name, *u, w)
		}
	}

	nodes := []*corev1.Node{node("n1", true, "4", nil), node("n2", true, "8", nil)}
	got := Build("c", nodes, cached)
	if r := got.Nodes[1].Requested[corev1.ResourceCPU]; r.Cmp(q("3350m")) != 0 {
		t.Errorf("n2 requested cpu = %s, want 3350m", r.String())
	}
	if got.Nodes[0].Pods != 1 || len(got.Nodes[0].HostPorts) != 1 {
		t.Errorf("n1: %d pods, host ports %v; want 1 pod (the terminal one left out) and its port", got.Nodes[0].Pods, got.Nodes[0].HostPorts)
	}
}

// A pod whose usage did not change (a container's state, its status
// conditions) triggers no computation; a resize, a binding or the end of
// the pod does.
func TestSameUsage(t *testing.T) {
	base := boundPod("a", "n1", "1", corev1.PodRunning)
	cases := []struct {
		name   string
		change func(p *corev1.Pod)
		want   bool
	}{
		{name: "a container started", change: func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", Ready: true}}
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}, want: true},
		{name: "the same request written another way", change: func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = list("cpu", "1000m")
		}, want: true},
		{name: "resized", change: func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = list("cpu", "2")
		}, want: false},
		{name: "finished", change: func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }, want: false},
		{name: "moved", change: func(p *corev1.Pod) { p.Spec.NodeName = "n2" }, want: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := base.DeepCopy()
			tc.change(p)
			if got := sameUsage(UsageOf(base), UsageOf(p)); got != tc.want {
				t.Errorf("sameUsage() = %v, want %v", got, tc.want)
			}
		})
	}
}
