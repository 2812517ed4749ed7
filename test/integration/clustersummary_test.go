package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	mcv1alpha1 "admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned/typed/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// Each cluster publishes one ClusterSummary, named after it, that lists
// its three kwok nodes with their region and 4 allocatable CPUs, and sums
// them.
func TestClusterSummaryListsEachClustersNodes(t *testing.T) {
	for _, c := range sandbox.Clusters {
		t.Run(c.Context, func(t *testing.T) {
			ctx := testContext(t, time.Minute)
			mc := versioned.NewForConfigOrDie(c.Config)
			eventually(ctx, t, "ClusterSummary "+c.Context, func(ctx context.Context) (bool, string, error) {
				s, err := mc.MulticlusterV1alpha1().ClusterSummaries().Get(ctx, c.Context, metav1.GetOptions{})
				if err != nil {
					return false, err.Error(), nil
				}
				var problems []string
				if len(s.Nodes) != 3 {
					problems = append(problems, fmt.Sprintf("%d nodes, want 3", len(s.Nodes)))
				}
				for i, n := range s.Nodes {
					if want := fmt.Sprintf("%s-node-%d", c.Context, i); n.Name != want {
						problems = append(problems, fmt.Sprintf("node %d is %s, want %s (sorted by name)", i, n.Name, want))
					}
					if got := n.Labels["topology.kubernetes.io/region"]; got != c.Region {
						problems = append(problems, fmt.Sprintf("%s region %q, want %q", n.Name, got, c.Region))
					}
					if cpu := n.Allocatable[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("4")) != 0 {
						problems = append(problems, fmt.Sprintf("%s allocatable cpu %s, want 4", n.Name, cpu.String()))
					}
					if !n.Ready || n.Unschedulable {
						problems = append(problems, fmt.Sprintf("%s ready %v unschedulable %v", n.Name, n.Ready, n.Unschedulable))
					}
				}
				for name, l := range map[string]corev1.ResourceList{"capacity": s.Capacity, "allocatable": s.Allocatable} {
					if cpu := l[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("12")) != 0 {
						problems = append(problems, fmt.Sprintf("%s cpu %s, want 12", name, cpu.String()))
					}
				}
				return len(problems) == 0, strings.Join(problems, "; "), nil
			})
		})
	}
}

// A bound pod's requests show on its node within the summary interval; an
// unchanged cluster makes no write; a virtual node (of a Target of the
// cluster itself) is not counted.
func TestClusterSummaryFollowsPodsAndIgnoresVirtualNodes(t *testing.T) {
	c3 := sandbox.Clusters[2]
	ctx := testContext(t, 2*time.Minute)
	ns := namespace(t, c3, "summary", nil)
	mc := versioned.NewForConfigOrDie(c3.Config)
	summaries := mc.MulticlusterV1alpha1().ClusterSummaries()

	p := pod(ns, "busy", "default-scheduler")
	p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("1300m")
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 18080}}
	if _, err := c3.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var nodeName string
	eventually(ctx, t, "pod bound", func(ctx context.Context) (bool, string, error) {
		got, err := c3.Client.CoreV1().Pods(ns).Get(ctx, "busy", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		nodeName = got.Spec.NodeName
		return nodeName != "", describePod(got), nil
	})

	// The node's requested resources are those of its non-terminal pods,
	// as the API server lists them (other tests' pods may come and go).
	eventually(ctx, t, "summary counts the pod on "+nodeName, func(ctx context.Context) (bool, string, error) {
		pods, err := c3.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + nodeName})
		if err != nil {
			return false, "", err
		}
		want := resource.Quantity{}
		var count int32
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			count++
			for _, c := range p.Spec.Containers {
				want.Add(c.Resources.Requests[corev1.ResourceCPU])
			}
		}
		s, err := summaries.Get(ctx, c3.Context, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		n := summaryNode(s, nodeName)
		if n == nil {
			return false, "node not in summary", nil
		}
		got := n.Requested[corev1.ResourceCPU]
		ports := strings.Join(n.HostPorts, ",")
		ok := got.Cmp(want) == 0 && got.Cmp(resource.MustParse("1300m")) >= 0 && n.Pods == count && strings.Contains(ports, "TCP/0.0.0.0/18080")
		return ok, fmt.Sprintf("requested cpu %s (want %s), pods %d (want %d), host ports %q", got.String(), want.String(), n.Pods, count, ports), nil
	})

	// Quiet now: no write, although kwok renews its nodes all along.
	eventually(ctx, t, "summary unchanged while nothing changes", func(ctx context.Context) (bool, string, error) {
		before, err := summaries.Get(ctx, c3.Context, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		time.Sleep(3 * time.Second)
		after, err := summaries.Get(ctx, c3.Context, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return before.ResourceVersion == after.ResourceVersion, fmt.Sprintf("resourceVersion %s then %s", before.ResourceVersion, after.ResourceVersion), nil
	})

	// A Target of the cluster itself brings a virtual node, standing for
	// the whole cluster: it must not count in the cluster's own summary.
	target := &v1alpha1.Target{ObjectMeta: metav1.ObjectMeta{Name: "self", Namespace: ns}, Spec: v1alpha1.TargetSpec{Self: true}}
	if _, err := mc.MulticlusterV1alpha1().Targets(ns).Create(ctx, target, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	virtual := "admiralty-namespace-" + ns + "-self"
	waitNodeReady(ctx, t, c3, virtual)
	// The virtual node is Ready, so a summary that counted it would do so
	// within its interval; give it a few.
	time.Sleep(3 * time.Second)
	s, err := summaries.Get(ctx, c3.Context, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := summaryNode(s, virtual); n != nil || len(s.Nodes) != 3 {
		t.Errorf("summary lists %d nodes (virtual node %s listed: %v), want the 3 kwok nodes only", len(s.Nodes), virtual, n != nil)
	}
	if cpu := s.Allocatable[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("12")) != 0 {
		t.Errorf("allocatable cpu with a virtual node = %s, want 12", cpu.String())
	}
}

// The summary is the delegator's: an edit is undone, a deleted one comes
// back.
func TestClusterSummaryIsRestored(t *testing.T) {
	c3 := sandbox.Clusters[2]
	ctx := testContext(t, time.Minute)
	summaries := versioned.NewForConfigOrDie(c3.Config).MulticlusterV1alpha1().ClusterSummaries()
	edited, err := summaries.Get(ctx, c3.Context, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	edited.Allocatable[corev1.ResourceCPU] = resource.MustParse("99")
	if _, err := summaries.Update(ctx, edited, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSummaryCPU(ctx, t, summaries, c3.Context, "", "an edited summary is restored")
	old, err := summaries.Get(ctx, c3.Context, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := summaries.Delete(ctx, c3.Context, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSummaryCPU(ctx, t, summaries, c3.Context, old.UID, "a deleted summary comes back")
}

// waitSummaryCPU waits for the summary name, other than the one of UID
// not, to show the 12 allocatable CPUs of its cluster.
func waitSummaryCPU(ctx context.Context, t *testing.T, summaries mcv1alpha1.ClusterSummaryInterface, name string, not types.UID, what string) {
	t.Helper()
	eventually(ctx, t, what, func(ctx context.Context) (bool, string, error) {
		s, err := summaries.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "not found", nil
		}
		if err != nil {
			return false, "", err
		}
		cpu := s.Allocatable[corev1.ResourceCPU]
		return s.UID != not && cpu.Cmp(resource.MustParse("12")) == 0, fmt.Sprintf("uid %s, allocatable cpu %s", s.UID, cpu.String()), nil
	})
}

func summaryNode(s *v1alpha1.ClusterSummary, name string) *v1alpha1.NodeSummary {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}
