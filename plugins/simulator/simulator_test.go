package simulator

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kubernetes/pkg/scheduler/metrics"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

func TestMain(m *testing.M) {
	// Inside the scheduler binary they are registered by the scheduler.
	metrics.Register()
	m.Run()
}

func summaryNode(name, region, cpu, requested string) v1alpha1.NodeSummary {
	return v1alpha1.NodeSummary{
		Name:        name,
		Labels:      map[string]string{"topology.kubernetes.io/region": region},
		Ready:       true,
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110")},
		Requested:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(requested)},
	}
}

func podRequesting(cpu string, selector map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u"},
		Spec: corev1.PodSpec{
			NodeSelector: selector,
			Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)},
			}}},
		},
	}
}

func TestSimulate(t *testing.T) {
	sim, err := New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	summary := &v1alpha1.ClusterSummary{Nodes: []v1alpha1.NodeSummary{
		summaryNode("n1", "eu", "4", "3500m"),
		summaryNode("n2", "eu", "4", "1"),
	}}
	cases := []struct {
		name         string
		pod          *corev1.Pod
		reservations []Reservation
		wantFits     []string
		wantReason   string
	}{
		{name: "a small pod fits on both nodes", pod: podRequesting("100m", nil), wantFits: []string{"n1", "n2"}},
		{name: "requested resources count against allocatable", pod: podRequesting("1", nil), wantFits: []string{"n2"}},
		{name: "reservations placed on a node count too", pod: podRequesting("1", nil),
			reservations: []Reservation{{NodeName: "n2", Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2500m")}}},
			wantReason:   "0/2 nodes are available: 2 Insufficient cpu."},
		{name: "a node selector on another region fits nowhere", pod: podRequesting("100m", map[string]string{"topology.kubernetes.io/region": "us"}),
			wantReason: "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := sim.Simulate(context.Background(), tc.pod, NodeInfos(summary, tc.reservations))
			var got []string
			for _, n := range res.Fits {
				got = append(got, n.Node().Name)
			}
			if strings.Join(got, ",") != strings.Join(tc.wantFits, ",") {
				t.Errorf("fits = %v, want %v (reason %q)", got, tc.wantFits, res.Reason)
			}
			if res.Reason != tc.wantReason {
				t.Errorf("reason = %q, want %q", res.Reason, tc.wantReason)
			}
		})
	}
}

func TestNodeInfosLeaveOutNodesThatAreNotReady(t *testing.T) {
	n := summaryNode("down", "eu", "4", "0")
	n.Ready = false
	if got := NodeInfos(&v1alpha1.ClusterSummary{Nodes: []v1alpha1.NodeSummary{n}}, nil); len(got) != 0 {
		t.Errorf("NodeInfos() = %d nodes, want 0", len(got))
	}
}
