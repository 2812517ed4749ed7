package kubectladmiralty

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/kubernetes"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

type statusOptions struct {
	*kubeFlags
	allNamespaces bool
}

func newStatusCommand(f *kubeFlags) *cobra.Command {
	o := &statusOptions{kubeFlags: f}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show this cluster's targets: health, capacity, allocatable and pod counts",
		Long: `Show the targets of the cluster of the current or --context context: its
ClusterTargets and the Targets of --namespace (or of every namespace with
-A). For each: its Ready condition (the delegator's health check), its
virtual node's readiness, capacity and allocatable (the sums over the
target's Ready nodes), and the proxy pods bound to that node by phase.`,
		Example: `  kubectl admiralty status --context cluster1 -A`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list the Targets of every namespace")
	return cmd
}

// targetRow is one target as status prints it.
type targetRow struct {
	name, kind, ready, reason, node string
}

func (o *statusOptions) run(ctx context.Context, out io.Writer) error {
	cc := o.clientConfig()
	cfg, err := cc.ClientConfig()
	if err != nil {
		return err
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return err
	}
	if o.allNamespaces {
		ns = metav1.NamespaceAll
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	mc, err := versioned.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var rows []targetRow
	cts, err := mc.MulticlusterV1alpha1().ClusterTargets().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing ClusterTargets: %w", err)
	}
	for _, t := range cts.Items {
		rows = append(rows, row(t.Name, "ClusterTarget", t.Status.Conditions, t.Status.VirtualNodeName))
	}
	ts, err := mc.MulticlusterV1alpha1().Targets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing Targets: %w", err)
	}
	for _, t := range ts.Items {
		rows = append(rows, row(t.Namespace+"/"+t.Name, "Target", t.Status.Conditions, t.Status.VirtualNodeName))
	}
	if len(rows) == 0 {
		where := "namespace " + ns
		if ns == metav1.NamespaceAll {
			where = "any namespace"
		}
		_, err := fmt.Fprintf(out, "No ClusterTargets, and no Targets in %s.\n", where)
		return err
	}
	// The proxies, by virtual node and phase: one list, by label.
	proxies, err := kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelIsProxy + "=true"})
	if err != nil {
		return fmt.Errorf("listing proxy pods: %w", err)
	}
	byNode := map[string]map[corev1.PodPhase]int{}
	for _, p := range proxies.Items {
		if p.Spec.NodeName == "" {
			continue
		}
		if byNode[p.Spec.NodeName] == nil {
			byNode[p.Spec.NodeName] = map[corev1.PodPhase]int{}
		}
		byNode[p.Spec.NodeName][p.Status.Phase]++
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TARGET\tKIND\tREADY\tREASON\tVIRTUAL NODE\tNODE READY\tCPU (ALLOC/CAP)\tMEMORY (ALLOC/CAP)\tPODS (ALLOC/CAP)\tPROXIES\tRUNNING\tPENDING\tSUCCEEDED\tFAILED")
	for _, r := range rows {
		nodeReady, cpu, mem, pods := "-", "-", "-", "-"
		if r.node != "" {
			n, err := kube.CoreV1().Nodes().Get(ctx, r.node, metav1.GetOptions{})
			switch {
			case err == nil:
				nodeReady = nodeCondition(n)
				cpu = allocCap(n, corev1.ResourceCPU)
				mem = allocCap(n, corev1.ResourceMemory)
				pods = allocCap(n, corev1.ResourcePods)
			default:
				nodeReady = "missing"
			}
		}
		phases := byNode[r.node]
		total := 0
		for _, n := range phases {
			total += n
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", r.name, r.kind, r.ready, r.reason, orDash(r.node), nodeReady, cpu, mem, pods,
			total, phases[corev1.PodRunning], phases[corev1.PodPending], phases[corev1.PodSucceeded], phases[corev1.PodFailed])
	}
	return w.Flush()
}

func row(name, kind string, conds []metav1.Condition, node string) targetRow {
	r := targetRow{name: name, kind: kind, ready: "Unknown", reason: "-", node: node}
	if c := meta.FindStatusCondition(conds, "Ready"); c != nil {
		r.ready, r.reason = string(c.Status), c.Reason
	}
	return r
}

func nodeCondition(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return string(c.Status)
		}
	}
	return "Unknown"
}

func allocCap(n *corev1.Node, name corev1.ResourceName) string {
	a, c := n.Status.Allocatable[name], n.Status.Capacity[name]
	return quantity(a, name) + "/" + quantity(c, name)
}

// quantity prints CPU in cores (or millicores) and memory in Gi when whole.
func quantity(q resource.Quantity, name corev1.ResourceName) string {
	if name == corev1.ResourceMemory {
		const gi = 1 << 30
		if v := q.Value(); v%gi == 0 {
			return fmt.Sprintf("%dGi", v/gi)
		}
	}
	return q.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}
