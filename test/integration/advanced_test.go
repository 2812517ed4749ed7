package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/plugins/proxy"
)

// Annotations of the sandbox's kwok stage pod-run-for
// (hack/sandbox/kwok-stages.yaml).
const (
	annotationRunFor   = "sandbox.multicluster.admiralty.io/run-for"
	annotationExitCode = "sandbox.multicluster.admiralty.io/exit-code"
)

// advFed is a namespace of the same name in the three clusters, where
// cluster1 is the source and targets (some of) the three: Target c1 (self),
// c2 (cluster2) and c3 (cluster3), as in the Getting Started.
type advFed struct {
	ns      string
	targets []string
}

// advFederate makes the namespace, the Sources and the Targets, enables
// election in cluster1 and waits for the virtual nodes.
func advFederate(t *testing.T, ctx context.Context, prefix string, targets ...string) *advFed {
	t.Helper()
	c1 := sandbox.Clusters[0]
	ns := prefix + "-" + rand.String(5)
	for _, c := range sandbox.Clusters {
		createNamespace(t, c, ns)
	}
	var manifests []string
	for _, name := range targets {
		if name == "c1" {
			manifests = append(manifests, fmt.Sprintf("apiVersion: multicluster.admiralty.io/v1alpha1\nkind: Target\nmetadata:\n  name: c1\n  namespace: %s\nspec:\n  self: true\n", ns))
			continue
		}
		cluster := "cluster" + strings.TrimPrefix(name, "c")
		applySource(t, advCluster(t, cluster), ns)
		shell(t, ctx, fmt.Sprintf(`
until kubectl admiralty export c1 --context %[2]s -n %[1]s --as %[3]s >/dev/null; do sleep 0.5; done
kubectl admiralty export c1 --context %[2]s -n %[1]s --as %[3]s | kubectl --context cluster1 -n %[1]s apply -f -
`, ns, cluster, name))
		manifests = append(manifests, fmt.Sprintf("apiVersion: multicluster.admiralty.io/v1alpha1\nkind: Target\nmetadata:\n  name: %[2]s\n  namespace: %[1]s\nspec:\n  kubeconfigSecret:\n    name: %[2]s\n", ns, name))
	}
	kubectlApply(t, c1, strings.Join(manifests, "---\n"))
	f := &advFed{ns: ns, targets: targets}
	mc1 := versioned.NewForConfigOrDie(c1.Config)
	for _, name := range targets {
		waitTargetReady(ctx, t, mc1, ns, name)
		waitNodeReady(ctx, t, c1, f.vnode(name))
	}
	labelNamespace(t, c1, ns)
	// Delete the proxies while the targets are connected, so that no
	// delegate is left behind (namespaces go in any order).
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		background := metav1.DeletePropagationBackground
		_ = c1.Client.BatchV1().Jobs(ns).DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &background}, metav1.ListOptions{})
		_ = c1.Client.AppsV1().Deployments(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = c1.Client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: v1alpha1.LabelIsProxy + "=true"})
		// The Targets before the namespaces: their cleanup in the targets
		// needs the Sources there.
		_ = mc1.MulticlusterV1alpha1().Targets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		for ctx.Err() == nil {
			list, err := mc1.MulticlusterV1alpha1().Targets(ns).List(ctx, metav1.ListOptions{})
			if err != nil || len(list.Items) == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		for _, c := range sandbox.Clusters {
			for ctx.Err() == nil {
				pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelParentUID})
				if err != nil || len(pods.Items) == 0 {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	})
	return f
}

func advCluster(t *testing.T, name string) *Cluster {
	for _, c := range sandbox.Clusters {
		if c.Context == name {
			return c
		}
	}
	t.Fatalf("no cluster %s in the sandbox", name)
	return nil
}

func (f *advFed) vnode(target string) string {
	return "admiralty-namespace-" + f.ns + "-" + target
}

// targetOf names the target a proxy is bound to, "" if none.
func (f *advFed) targetOf(p *corev1.Pod) string {
	return strings.TrimPrefix(p.Spec.NodeName, "admiralty-namespace-"+f.ns+"-")
}

// advClusterOfTarget is the sandbox cluster behind a target name.
func advClusterOfTarget(target string) *Cluster {
	switch target {
	case "c1":
		return sandbox.Clusters[0]
	case "c2":
		return sandbox.Clusters[1]
	case "c3":
		return sandbox.Clusters[2]
	}
	return nil
}

// advRequireTimedPods fails at once, saying why, on a sandbox whose kwok does
// not have the pod-run-for stage (created before it existed).
func advRequireTimedPods(t *testing.T) {
	t.Helper()
	for _, c := range sandbox.Clusters {
		data, err := os.ReadFile(c.KwokWorkdir + "/kwok.yaml")
		if err != nil {
			t.Fatalf("%s: %v", c.Context, err)
		}
		if !strings.Contains(string(data), "pod-run-for") {
			t.Fatalf("%s was created before hack/sandbox/kwok-stages.yaml (its kwok has no pod-run-for stage): "+
				"bring the sandbox down and up again (hack/sandbox.sh down, with the same SANDBOX_* variables)", c.Context)
		}
	}
}

// advFiller is a pod bound by name to node (no scheduler) that takes room.
func advFiller(t *testing.T, c *Cluster, ns, name, node string, requests corev1.ResourceList, labels map[string]string, hostPort int32) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "main", Image: "filler", Resources: corev1.ResourceRequirements{Requests: requests}}},
		},
	}
	if hostPort > 0 {
		pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: hostPort, HostPort: hostPort}}
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: filler %s: %v", c.Context, name, err)
	}
}

// advWaitSummary waits until cluster c's ClusterSummary satisfies ok.
func advWaitSummary(ctx context.Context, t *testing.T, c *Cluster, what string, ok func(s *v1alpha1.ClusterSummary) (bool, string)) {
	t.Helper()
	mc := versioned.NewForConfigOrDie(c.Config)
	eventually(ctx, t, c.Context+": summary shows "+what, func(ctx context.Context) (bool, string, error) {
		s, err := mc.MulticlusterV1alpha1().ClusterSummaries().Get(ctx, c.Context, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		done, msg := ok(s)
		return done, msg, nil
	})
}

// advRequested: every node of the summary has at least cpu and
// memory requested.
func advRequested(cpu, mem string) func(s *v1alpha1.ClusterSummary) (bool, string) {
	return func(s *v1alpha1.ClusterSummary) (bool, string) {
		var msg []string
		done := len(s.Nodes) > 0
		for _, n := range s.Nodes {
			c, m := n.Requested[corev1.ResourceCPU], n.Requested[corev1.ResourceMemory]
			msg = append(msg, fmt.Sprintf("%s cpu %s mem %s", n.Name, c.String(), m.String()))
			if c.Cmp(resource.MustParse(cpu)) < 0 || m.Cmp(resource.MustParse(mem)) < 0 {
				done = false
			}
		}
		return done, strings.Join(msg, ", ")
	}
}

// advPod is a pod that asks to be a proxy.
func advPod(name string, annotations map[string]string, mutate func(*corev1.PodSpec)) *corev1.Pod {
	a := map[string]string{v1alpha1.AnnotationElect: ""}
	for k, v := range annotations {
		a[k] = v
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}, Annotations: a},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		}}}},
	}
	if mutate != nil {
		mutate(&p.Spec)
	}
	return p
}

// runProxy creates an elected pod in cluster1 and waits until it runs in a
// target; it returns the target's name.
func (f *advFed) runProxy(ctx context.Context, t *testing.T, pod *corev1.Pod) (string, *corev1.Pod) {
	t.Helper()
	c1 := sandbox.Clusters[0]
	if _, err := c1.Client.CoreV1().Pods(f.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s: %v", pod.Name, err)
	}
	var got *corev1.Pod
	eventually(ctx, t, "proxy "+pod.Name+" Running in a target", func(ctx context.Context) (bool, string, error) {
		p, err := c1.Client.CoreV1().Pods(f.ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		got = p
		if p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning {
			return true, "", nil
		}
		events, _ := podEvents(ctx, c1, p)
		return false, fmt.Sprintf("on %q, %s; events: %s", p.Spec.NodeName, p.Status.Phase, summarizeEvents(events)), nil
	})
	return f.targetOf(got), got
}

// triedOnlyIn checks that no target other than want refused the proxy's
// candidate: no FailedScheduling Event names its delegate there.
func (f *advFed) triedOnlyIn(ctx context.Context, t *testing.T, p *corev1.Pod, want string) {
	t.Helper()
	name := proxy.ChaperonName(p, "cluster1")
	for _, target := range f.targets {
		if target == want {
			continue
		}
		c := advClusterOfTarget(target)
		events, err := c.Client.CoreV1().Events(f.ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			t.Fatal(err)
		}
		// A refusal by that target's scheduler: the simulation should have
		// seen it coming. (An accepted candidate whose answer came too late,
		// right after a scheduler restarts, is no simulation error.)
		for _, e := range events.Items {
			if e.Reason == "FailedScheduling" {
				t.Errorf("%s was sent to %s too, which refused it (%s); the simulation should have ruled it out", p.Name, target, e.Message)
			}
		}
	}
}

func (f *advFed) deletePod(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	c1 := sandbox.Clusters[0]
	if err := c1.Client.CoreV1().Pods(f.ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	waitGone(ctx, t, "proxy "+name, func(ctx context.Context) error {
		_, err := c1.Client.CoreV1().Pods(f.ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
}

// advDelegateWatch counts, while it runs, the live (not deleting) delegates
// of each proxy across the clusters, and remembers the highest count.
type advDelegateWatch struct {
	mu   sync.Mutex
	most map[types.UID]int
	stop context.CancelFunc
	done chan struct{}
}

func advWatchDelegates(ns string) *advDelegateWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &advDelegateWatch{most: map[types.UID]int{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			count := map[types.UID]int{}
			for _, c := range sandbox.Clusters {
				pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelParentUID})
				if err != nil {
					continue
				}
				for _, p := range pods.Items {
					if p.DeletionTimestamp == nil {
						count[types.UID(p.Labels[v1alpha1.LabelParentUID])]++
					}
				}
			}
			w.mu.Lock()
			for uid, n := range count {
				w.most[uid] = max(w.most[uid], n)
			}
			w.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return w
}

func (w *advDelegateWatch) check(t *testing.T) {
	t.Helper()
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	for uid, n := range w.most {
		if n > 1 {
			t.Errorf("proxy %s had %d delegates at once", uid, n)
		}
	}
}

// TestAdvancedScheduling: each constraint kind is decided in simulation
// against the targets' nodes, in a landscape where the capacity score
// alone prefers c1, so that each constraint must move the pod elsewhere
// (or, for tolerations, to a cluster that would otherwise be ruled out):
//
//	c1 (us): 2 CPUs taken on each node       -> capacity score 75 (the default choice)
//	c2 (eu): 12 GiB taken on each node       -> 62
//	c3 (ap): 3 CPUs taken on each node       -> 62
func TestAdvancedScheduling(t *testing.T) {
	c1, c2, c3 := sandbox.Clusters[0], sandbox.Clusters[1], sandbox.Clusters[2]
	ctx := testContext(t, 10*time.Minute)
	f := advFederate(t, ctx, "adv", "c1", "c2", "c3")
	for i := 0; i < 3; i++ {
		advFiller(t, c1, f.ns, fmt.Sprintf("fill-%d", i), fmt.Sprintf("cluster1-node-%d", i),
			corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}, map[string]string{"role": "filler-c1"}, 0)
		advFiller(t, c2, f.ns, fmt.Sprintf("fill-%d", i), fmt.Sprintf("cluster2-node-%d", i),
			corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("12Gi")}, nil, 0)
		advFiller(t, c3, f.ns, fmt.Sprintf("fill-%d", i), fmt.Sprintf("cluster3-node-%d", i),
			corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}, nil, 0)
	}
	advWaitSummary(ctx, t, c1, "the fillers", advRequested("2", "0"))
	advWaitSummary(ctx, t, c2, "the fillers", advRequested("0", "12Gi"))
	advWaitSummary(ctx, t, c3, "the fillers", advRequested("3", "0"))

	place := func(t *testing.T, pod *corev1.Pod, want string) {
		t.Helper()
		got, p := f.runProxy(ctx, t, pod)
		if got != want {
			t.Errorf("%s runs in %s, want %s", pod.Name, got, want)
		}
		f.triedOnlyIn(ctx, t, p, got)
		f.deletePod(ctx, t, pod.Name)
	}
	region := func(op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: corev1.LabelTopologyRegion, Operator: op, Values: values}
	}

	t.Run("baseline: capacity alone picks c1", func(t *testing.T) {
		place(t, advPod("baseline", nil, nil), "c1")
	})
	t.Run("node selector", func(t *testing.T) {
		place(t, advPod("selector", nil, func(s *corev1.PodSpec) {
			s.NodeSelector = map[string]string{corev1.LabelTopologyRegion: "ap"}
		}), "c3")
	})
	t.Run("required node affinity", func(t *testing.T) {
		place(t, advPod("required", nil, func(s *corev1.PodSpec) {
			s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{region(corev1.NodeSelectorOpIn, "eu")}}},
			}}}
		}), "c2")
	})
	t.Run("preferred node affinity", func(t *testing.T) {
		place(t, advPod("preferred", nil, func(s *corev1.PodSpec) {
			s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
				Weight: 100, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{region(corev1.NodeSelectorOpIn, "ap")}},
			}}}}
		}), "c3")
	})
	t.Run("resource requests", func(t *testing.T) {
		// 3 CPUs fit on no node of c1 (2 left) or c3 (1 left).
		place(t, advPod("requests", nil, func(s *corev1.PodSpec) {
			s.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("3")
		}), "c2")
	})
	t.Run("extended resources", func(t *testing.T) {
		gpu := corev1.ResourceName("example.com/gpu")
		advSetExtended(ctx, t, c3, gpu, "2")
		advWaitSummary(ctx, t, c3, "the extended resource", func(s *v1alpha1.ClusterSummary) (bool, string) {
			for _, n := range s.Nodes {
				if q, ok := n.Allocatable[gpu]; !ok || q.IsZero() {
					return false, n.Name + " has no " + string(gpu)
				}
			}
			return true, ""
		})
		place(t, advPod("gpu", nil, func(s *corev1.PodSpec) {
			s.Containers[0].Resources.Requests[gpu] = resource.MustParse("1")
			s.Containers[0].Resources.Limits = corev1.ResourceList{gpu: resource.MustParse("1")}
		}), "c3")
	})
	t.Run("tolerations", func(t *testing.T) {
		taint := corev1.Taint{Key: "test.admiralty.io/dedicated", Value: "x", Effect: corev1.TaintEffectNoSchedule}
		advSetTaint(ctx, t, c1, &taint)
		t.Cleanup(func() { advSetTaint(context.Background(), t, c1, nil) })
		advWaitSummary(ctx, t, c1, "the taint", func(s *v1alpha1.ClusterSummary) (bool, string) {
			for _, n := range s.Nodes {
				if len(n.Taints) == 0 {
					return false, n.Name + " untainted"
				}
			}
			return true, ""
		})
		got, p := f.runProxy(ctx, t, advPod("intolerant", nil, nil))
		if got == "c1" {
			t.Errorf("a pod that does not tolerate c1's taint runs in c1")
		}
		f.triedOnlyIn(ctx, t, p, got)
		f.deletePod(ctx, t, "intolerant")
		place(t, advPod("tolerant", nil, func(s *corev1.PodSpec) {
			s.Tolerations = []corev1.Toleration{{Key: taint.Key, Operator: corev1.TolerationOpEqual, Value: taint.Value, Effect: taint.Effect}}
		}), "c1")
		advSetTaint(ctx, t, c1, nil)
	})
	t.Run("host ports", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			advFiller(t, c1, f.ns, fmt.Sprintf("port-%d", i), fmt.Sprintf("cluster1-node-%d", i), nil, nil, 8080)
		}
		advWaitSummary(ctx, t, c1, "host port 8080 on every node", func(s *v1alpha1.ClusterSummary) (bool, string) {
			for _, n := range s.Nodes {
				if !strings.Contains(strings.Join(n.HostPorts, ","), "/8080") {
					return false, fmt.Sprintf("%s host ports %v", n.Name, n.HostPorts)
				}
			}
			return true, ""
		})
		got, p := f.runProxy(ctx, t, advPod("hostport", nil, func(s *corev1.PodSpec) {
			s.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 8080}}
		}))
		if got == "c1" {
			t.Errorf("a pod with host port 8080 runs in c1, where every node has it taken")
		}
		f.triedOnlyIn(ctx, t, p, got)
		f.deletePod(ctx, t, "hostport")
		for i := 0; i < 3; i++ {
			_ = c1.Client.CoreV1().Pods(f.ns).Delete(ctx, fmt.Sprintf("port-%d", i), metav1.DeleteOptions{})
		}
	})
	t.Run("pod anti-affinity inside a target converges", func(t *testing.T) {
		// The simulation cannot see c1's pods: c1's own scheduler refuses
		// the candidate (every node runs a filler-c1), and the pod goes on.
		w := advWatchDelegates(f.ns)
		got, p := f.runProxy(ctx, t, advPod("anti", nil, func(s *corev1.PodSpec) {
			s.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "filler-c1"}},
				TopologyKey:   corev1.LabelHostname,
			}}}}
		}))
		w.check(t)
		if got == "c1" {
			t.Errorf("the pod runs in c1, next to the pods it must avoid")
		}
		events, err := podEvents(ctx, c1, p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(summarizeEvents(events), "c1 refused the candidate") {
			t.Errorf("no event tells that c1 refused the pod: %s", summarizeEvents(events))
		}
		advOneChaperon(ctx, t, p)
		f.deletePod(ctx, t, "anti")
	})
	t.Run("pod affinity inside a target converges", func(t *testing.T) {
		// Only c3 runs a pod labeled db: c1 and c2 refuse, c3 accepts.
		advFiller(t, c3, f.ns, "db", "cluster3-node-1", nil, map[string]string{"role": "db"}, 0)
		w := advWatchDelegates(f.ns)
		got, p := f.runProxy(ctx, t, advPod("near-db", nil, func(s *corev1.PodSpec) {
			s.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "db"}},
				TopologyKey:   corev1.LabelHostname,
			}}}}
		}))
		w.check(t)
		if got != "c3" {
			t.Errorf("the pod runs in %s, want c3 (next to the db pod)", got)
		}
		advOneChaperon(ctx, t, p)
		f.deletePod(ctx, t, "near-db")
	})
	t.Run("unschedulable everywhere", func(t *testing.T) {
		pod := advPod("too-big", nil, func(s *corev1.PodSpec) {
			s.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("5")
		})
		if _, err := c1.Client.CoreV1().Pods(f.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(ctx, t, "PodScheduled=False and an Event with each target's reason", func(ctx context.Context) (bool, string, error) {
			p, err := c1.Client.CoreV1().Pods(f.ns).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			cond := podCondition(p.Status.Conditions, corev1.PodScheduled)
			if cond == nil || cond.Status != corev1.ConditionFalse || cond.Reason != corev1.PodReasonUnschedulable {
				return false, fmt.Sprintf("condition %+v", cond), nil
			}
			events, err := podEvents(ctx, c1, p)
			if err != nil {
				return false, "", err
			}
			for _, e := range events {
				if e.Reason == "FailedScheduling" && strings.Contains(e.Message, "c1: 0/3 nodes: 3 Insufficient cpu") &&
					strings.Contains(e.Message, "c2: 0/3 nodes: 3 Insufficient cpu") && strings.Contains(e.Message, "c3: 0/3 nodes: 3 Insufficient cpu") {
					return p.Spec.NodeName == "", "", nil
				}
			}
			return false, summarizeEvents(events), nil
		})
		f.deletePod(ctx, t, pod.Name)
	})
	t.Run("topology spread across clusters", func(t *testing.T) {
		advSpreadDeployment(t, f, "spread", 9, corev1.LabelTopologyRegion)
		got := advPlacement(ctx, t, f, "spread", 9)
		if got["c1"] != 3 || got["c2"] != 3 || got["c3"] != 3 {
			t.Errorf("replicas per target %v, want 3/3/3", got)
		}
		checkNoAcrossConstraintInDelegates(ctx, t, f, "spread", corev1.LabelTopologyRegion)
	})
	t.Run("topology spread on the cluster-name label", func(t *testing.T) {
		// A key that the targets' nodes do not carry: decided over the
		// virtual nodes only, and left out of the delegates (whose target
		// would find no node with it).
		advSpreadDeployment(t, f, "spread-name", 6, v1alpha1.LabelTargetName)
		got := advPlacement(ctx, t, f, "spread-name", 6)
		if got["c1"] != 2 || got["c2"] != 2 || got["c3"] != 2 {
			t.Errorf("replicas per target %v, want 2/2/2", got)
		}
		checkNoAcrossConstraintInDelegates(ctx, t, f, "spread-name", v1alpha1.LabelTargetName)
	})
}

func advSetExtended(ctx context.Context, t *testing.T, c *Cluster, name corev1.ResourceName, value string) {
	t.Helper()
	patch := fmt.Sprintf(`{"status":{"capacity":{%q:%q},"allocatable":{%q:%q}}}`, name, value, name, value)
	undo := fmt.Sprintf(`{"status":{"capacity":{%q:null},"allocatable":{%q:null}}}`, name, name)
	for i := 0; i < 3; i++ {
		node := fmt.Sprintf("%s-node-%d", c.Context, i)
		if _, err := c.Client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = c.Client.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, []byte(undo), metav1.PatchOptions{}, "status")
		})
	}
}

// advSetTaint sets (or, with nil, removes) the test taint on c's nodes.
func advSetTaint(ctx context.Context, t *testing.T, c *Cluster, taint *corev1.Taint) {
	t.Helper()
	for i := 0; i < 3; i++ {
		node := fmt.Sprintf("%s-node-%d", c.Context, i)
		n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var taints []corev1.Taint
		for _, tt := range n.Spec.Taints {
			if tt.Key != "test.admiralty.io/dedicated" {
				taints = append(taints, tt)
			}
		}
		if taint != nil {
			taints = append(taints, *taint)
		}
		n.Spec.Taints = taints
		if _, err := c.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// advOneChaperon: exactly one chaperon of the proxy exists, across the
// clusters, counting a delegate in cluster1 (its self target, c1) as its
// own chaperon.
func advOneChaperon(ctx context.Context, t *testing.T, p *corev1.Pod) {
	t.Helper()
	n := 0
	sel := metav1.ListOptions{LabelSelector: v1alpha1.LabelParentUID + "=" + string(p.UID)}
	for _, c := range sandbox.Clusters {
		list, err := versioned.NewForConfigOrDie(c.Config).MulticlusterV1alpha1().PodChaperons(p.Namespace).List(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range list.Items {
			if ch.DeletionTimestamp == nil {
				n++
			}
		}
	}
	self, err := sandbox.Clusters[0].Client.CoreV1().Pods(p.Namespace).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range self.Items {
		if d.DeletionTimestamp == nil && metav1.GetControllerOf(&d) == nil {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%s has %d chaperons, want 1", p.Name, n)
	}
}

func advSpreadDeployment(t *testing.T, f *advFed, name string, replicas int, key string) {
	t.Helper()
	kubectlApply(t, sandbox.Clusters[0], fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  replicas: %[3]d
  selector:
    matchLabels:
      app: %[2]s
  template:
    metadata:
      labels:
        app: %[2]s
      annotations:
        multicluster.admiralty.io/elect: ""
    spec:
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: %[4]s
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels:
            app: %[2]s
      containers:
      - name: main
        image: nginx
        resources:
          requests:
            cpu: 100m
            memory: 32Mi
`, f.ns, name, replicas, key))
}

// advPlacement waits for the Deployment's proxies to run and
// returns how many run in each target.
func advPlacement(ctx context.Context, t *testing.T, f *advFed, name string, want int) map[string]int {
	t.Helper()
	c1 := sandbox.Clusters[0]
	var placement map[string]int
	eventually(ctx, t, fmt.Sprintf("%d proxies of %s Running", want, name), func(ctx context.Context) (bool, string, error) {
		pods, err := c1.Client.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, "", err
		}
		placement = map[string]int{}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != "" && p.DeletionTimestamp == nil {
				running++
				placement[f.targetOf(&p)]++
			}
		}
		return running == want && len(pods.Items) == want, fmt.Sprintf("%d/%d running of %d, %v", running, want, len(pods.Items), placement), nil
	})
	t.Logf("%s: %v", name, placement)
	return placement
}

func checkNoAcrossConstraintInDelegates(ctx context.Context, t *testing.T, f *advFed, name, key string) {
	t.Helper()
	for _, c := range sandbox.Clusters {
		pods, err := c.Client.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelPrefix + "app=" + name})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			for _, tsc := range p.Spec.TopologySpreadConstraints {
				if tsc.TopologyKey == key {
					t.Errorf("delegate %s/%s keeps the across-cluster constraint on %s", c.Context, p.Name, key)
				}
			}
		}
	}
}

// priorityClass creates a PriorityClass in every cluster (the source's
// admission gives the proxy its priority, each target's the delegate's).
func advPriorityClass(t *testing.T, value int32) string {
	t.Helper()
	name := "adv-high-" + rand.String(5)
	for _, c := range sandbox.Clusters {
		pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value}
		if _, err := c.Client.SchedulingV1().PriorityClasses().Create(context.Background(), pc, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", c.Context, err)
		}
		t.Cleanup(func() {
			_ = c.Client.SchedulingV1().PriorityClasses().Delete(context.Background(), name, metav1.DeleteOptions{})
		})
	}
	return name
}

// A high-priority proxy that fits nowhere goes to a target where it would
// fit once pods make room; that target's own scheduler (profile
// admiralty-candidate) preempts a local pod there. The proxy scheduler
// evicts no proxy: a low-priority proxy keeps running, same UID.
func TestPreemptionInTarget(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	f := advFederate(t, ctx, "preempt", "c1", "c2", "c3")
	low, lowPod := f.runProxy(ctx, t, advPod("low", nil, nil))
	for _, c := range sandbox.Clusters {
		for i := 0; i < 3; i++ {
			advFiller(t, c, f.ns, fmt.Sprintf("fill-%d", i), fmt.Sprintf("%s-node-%d", c.Context, i),
				corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3500m")}, map[string]string{"role": "victim"}, 0)
		}
	}
	for _, c := range sandbox.Clusters {
		advWaitSummary(ctx, t, c, "the fillers", advRequested("3500m", "0"))
	}
	class := advPriorityClass(t, 1000000)
	high, _ := f.runProxy(ctx, t, advPod("high", nil, func(s *corev1.PodSpec) {
		s.PriorityClassName = class
		s.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("2")
	}))
	victims := 0
	for _, target := range f.targets {
		c := advClusterOfTarget(target)
		pods, err := c.Client.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: "role=victim"})
		if err != nil {
			t.Fatal(err)
		}
		live := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				live++
			}
		}
		if target == high {
			victims = 3 - live
		} else if live != 3 {
			t.Errorf("%s lost %d local pods, though the high-priority pod went to %s", target, 3-live, high)
		}
	}
	if victims != 1 {
		t.Errorf("%s preempted %d local pods, want 1", high, victims)
	}
	p, err := sandbox.Clusters[0].Client.CoreV1().Pods(f.ns).Get(ctx, "low", metav1.GetOptions{})
	if err != nil || p.UID != lowPod.UID || f.targetOf(p) != low || p.DeletionTimestamp != nil {
		t.Errorf("the low-priority proxy was disturbed: %v, %+v", err, p)
	}
}

// multicluster.admiralty.io/no-reservation: the pod is committed to the
// first target that could take it once room is made (here the one it is
// pinned to, which is full): the proxy binds as soon as the chaperon
// exists, the delegate waits in the target's queue, and runs when room is
// made there. Its twin without the annotation is not sent while the
// target is full.
func TestNoReservation(t *testing.T) {
	c2 := sandbox.Clusters[1]
	ctx := testContext(t, 4*time.Minute)
	f := advFederate(t, ctx, "norsv", "c1", "c2", "c3")
	for i := 0; i < 3; i++ {
		advFiller(t, c2, f.ns, fmt.Sprintf("fill-%d", i), fmt.Sprintf("cluster2-node-%d", i),
			corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3500m")}, nil, 0)
	}
	advWaitSummary(ctx, t, c2, "the fillers", advRequested("3500m", "0"))
	c1 := sandbox.Clusters[0]
	big := func(s *corev1.PodSpec) {
		s.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("1")
	}
	for _, pod := range []*corev1.Pod{
		advPod("queued", map[string]string{v1alpha1.AnnotationClusterName: "c2", v1alpha1.AnnotationNoReservation: ""}, big),
		advPod("reserved", map[string]string{v1alpha1.AnnotationClusterName: "c2"}, big),
	} {
		if _, err := c1.Client.CoreV1().Pods(f.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var queued *corev1.Pod
	eventually(ctx, t, "the no-reservation proxy bound to c2 while its delegate waits there", func(ctx context.Context) (bool, string, error) {
		p, err := c1.Client.CoreV1().Pods(f.ns).Get(ctx, "queued", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		queued = p
		d, err := c2.Client.CoreV1().Pods(f.ns).Get(ctx, proxy.ChaperonName(p, "cluster1"), metav1.GetOptions{})
		if err != nil {
			return false, fmt.Sprintf("proxy on %q, delegate: %v", p.Spec.NodeName, err), nil
		}
		cond := podCondition(d.Status.Conditions, corev1.PodScheduled)
		return f.targetOf(p) == "c2" && d.Spec.NodeName == "" && cond != nil && cond.Reason == corev1.PodReasonUnschedulable,
			fmt.Sprintf("proxy on %q, delegate on %q, %+v", p.Spec.NodeName, d.Spec.NodeName, cond), nil
	})
	advOneChaperon(ctx, t, queued)
	reserved, err := c1.Client.CoreV1().Pods(f.ns).Get(ctx, "reserved", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if reserved.Spec.NodeName != "" {
		t.Errorf("the pod without no-reservation was bound to %s, though c2 is full", reserved.Spec.NodeName)
	}
	// Room is made in c2: the queued delegate runs there, and the proxy
	// with it.
	if err := c2.Client.CoreV1().Pods(f.ns).Delete(ctx, "fill-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRunning(ctx, t, c1, f.ns, "queued")
	p, err := c1.Client.CoreV1().Pods(f.ns).Get(ctx, "queued", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.UID != queued.UID || f.targetOf(p) != "c2" {
		t.Errorf("the queued proxy changed: uid %s on %s", p.UID, p.Spec.NodeName)
	}
	advOneChaperon(ctx, t, p)
}

// Jobs: a delegate that succeeds or fails makes its proxy succeed or fail
// with the same exit codes, so the Job completes (or fails); a finished
// delegate is not run again.
func TestJobs(t *testing.T) {
	advRequireTimedPods(t)
	c1 := sandbox.Clusters[0]
	ctx := testContext(t, 4*time.Minute)
	f := advFederate(t, ctx, "jobs", "c1", "c2")
	advJob(t, f, "ok", 3, "3s", "0", 2)
	advJob(t, f, "fails", 1, "3s", "3", 0)
	waitJob(ctx, t, f, "ok", batchv1.JobComplete)
	waitJob(ctx, t, f, "fails", batchv1.JobFailed)
	for job, want := range map[string]struct {
		phase corev1.PodPhase
		code  int32
	}{"ok": {corev1.PodSucceeded, 0}, "fails": {corev1.PodFailed, 3}} {
		pods, err := c1.Client.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) == 0 {
			t.Errorf("job %s: no pod", job)
		}
		for _, p := range pods.Items {
			if p.Status.Phase != want.phase {
				t.Errorf("%s: phase %s, want %s", p.Name, p.Status.Phase, want.phase)
			}
			if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Terminated == nil ||
				p.Status.ContainerStatuses[0].State.Terminated.ExitCode != want.code {
				t.Errorf("%s: container statuses %+v, want terminated with exit code %d", p.Name, p.Status.ContainerStatuses, want.code)
			}
			advOneChaperon(ctx, t, &p)
			d, err := advClusterOfTarget(f.targetOf(&p)).Client.CoreV1().Pods(f.ns).Get(ctx, proxy.ChaperonName(&p, "cluster1"), metav1.GetOptions{})
			if err != nil {
				t.Errorf("%s: its delegate: %v", p.Name, err)
				continue
			}
			if d.Status.Phase != want.phase || d.CreationTimestamp.After(p.Status.ContainerStatuses[0].State.Terminated.FinishedAt.Time) {
				t.Errorf("%s: delegate %s %s created %s: run again after it finished", p.Name, d.Name, d.Status.Phase, d.CreationTimestamp)
			}
		}
	}
}

// advJob creates a Job of elected pods that run for runFor and exit with
// exitCode (the sandbox's kwok stage pod-run-for).
func advJob(t *testing.T, f *advFed, name string, parallel int, runFor, exitCode string, backoffLimit int32) {
	t.Helper()
	kubectlApply(t, sandbox.Clusters[0], fmt.Sprintf(`
apiVersion: batch/v1
kind: Job
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  completions: %[3]d
  parallelism: %[3]d
  backoffLimit: %[6]d
  template:
    metadata:
      annotations:
        multicluster.admiralty.io/elect: ""
        %[7]s: %[4]q
        %[8]s: %[5]q
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        resources:
          requests:
            cpu: 100m
            memory: 32Mi
`, f.ns, name, parallel, runFor, exitCode, backoffLimit, annotationRunFor, annotationExitCode))
}

func waitJob(ctx context.Context, t *testing.T, f *advFed, name string, cond batchv1.JobConditionType) *batchv1.Job {
	t.Helper()
	var job *batchv1.Job
	eventually(ctx, t, "job "+name+" "+string(cond), func(ctx context.Context) (bool, string, error) {
		j, err := sandbox.Clusters[0].Client.BatchV1().Jobs(f.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		job = j
		for _, c := range j.Status.Conditions {
			if c.Type == cond && c.Status == corev1.ConditionTrue {
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("active %d succeeded %d failed %d", j.Status.Active, j.Status.Succeeded, j.Status.Failed), nil
	})
	return job
}

// Scenario A of the blog posts: 10 parallel one-minute steps, each
// requesting 2 CPUs, when one cluster alone fits only half of them (5:
// two per node, minus one node's half taken). Alone (Target c3 only) they
// run in two waves; with two clusters (Targets c1 and c2, another
// namespace, at the same time) in one. The wall times are reported, not
// asserted (timing goes to make bench).
func TestScenarioAParallelSteps(t *testing.T) {
	advRequireTimedPods(t)
	ctx := testContext(t, 8*time.Minute)
	alone := advFederate(t, ctx, "scena1", "c3")
	spread := advFederate(t, ctx, "scena2", "c1", "c2")
	for _, c := range sandbox.Clusters {
		f := alone
		if c.Context != "cluster3" {
			f = spread
		}
		advFiller(t, c, f.ns, "half-node", c.Context+"-node-0", corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}, nil, 0)
		advWaitSummary(ctx, t, c, "the filler", func(s *v1alpha1.ClusterSummary) (bool, string) {
			q := s.Nodes[0].Requested[corev1.ResourceCPU]
			return q.Cmp(resource.MustParse("2")) >= 0, q.String()
		})
	}
	layouts := map[string]*advFed{"one cluster": alone, "two clusters": spread}
	for _, f := range layouts {
		kubectlApply(t, sandbox.Clusters[0], fmt.Sprintf(`
apiVersion: batch/v1
kind: Job
metadata:
  name: steps
  namespace: %s
spec:
  completions: 10
  parallelism: 10
  template:
    metadata:
      annotations:
        multicluster.admiralty.io/elect: ""
        %s: 60s
    spec:
      restartPolicy: Never
      containers:
      - name: step
        image: busybox
        resources:
          requests:
            cpu: "2"
`, f.ns, annotationRunFor))
	}
	times := map[string]time.Duration{}
	placements := map[string]map[string]int{}
	for name, f := range layouts {
		// The Job's own start and completion times: the wall time of the
		// layout, from the first step created to the last done.
		j := waitJob(ctx, t, f, "steps", batchv1.JobComplete)
		if j.Status.StartTime != nil && j.Status.CompletionTime != nil {
			times[name] = j.Status.CompletionTime.Sub(j.Status.StartTime.Time)
		}
		placements[name] = map[string]int{}
		pods, err := sandbox.Clusters[0].Client.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=steps"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			placements[name][f.targetOf(&p)]++
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("scenario A: 10 one-minute steps of 2 CPUs: one cluster %s %v, two clusters %s %v",
		times["one cluster"].Round(time.Second), placements["one cluster"], times["two clusters"].Round(time.Second), placements["two clusters"])
	if p := placements["two clusters"]; p["c1"] == 0 || p["c2"] == 0 {
		t.Errorf("two clusters: steps per target %v, want both used", p)
	}
	if p := placements["one cluster"]; p["c3"] != 10 {
		t.Errorf("one cluster: steps per target %v, want all 10 in c3", p)
	}
}

// Scenario B of the blog posts: a DAG whose steps are pinned to clusters
// by multicluster.admiralty.io/clustername, each reading the config map
// that the step before wrote. kwok runs no code, so the test plays both
// the workflow controller (a step starts when the one before succeeded)
// and the steps' writes (it creates a step's output config map in the
// source when the step succeeded); following (delegator/follow) copies it
// to the cluster of the next step, before that step's delegate is made.
func TestScenarioBPinnedDAG(t *testing.T) {
	advRequireTimedPods(t)
	c1 := sandbox.Clusters[0]
	ctx := testContext(t, 4*time.Minute)
	f := advFederate(t, ctx, "scenb", "c1", "c2", "c3")
	steps := []struct{ name, target, input string }{
		{name: "extract", target: "c2"},
		{name: "anonymize", target: "c3", input: "extract-output"},
		{name: "load", target: "c1", input: "anonymize-output"},
	}
	var previousEnd time.Time
	for _, step := range steps {
		pod := advPod(step.name, map[string]string{v1alpha1.AnnotationClusterName: step.target, annotationRunFor: "2s"}, func(s *corev1.PodSpec) {
			s.RestartPolicy = corev1.RestartPolicyNever
			if step.input != "" {
				s.Volumes = []corev1.Volume{{Name: "input", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: step.input}}}}}
				s.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "input", MountPath: "/input"}}
			}
		})
		if _, err := c1.Client.CoreV1().Pods(f.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var done *corev1.Pod
		eventually(ctx, t, "step "+step.name+" Succeeded in "+step.target, func(ctx context.Context) (bool, string, error) {
			p, err := c1.Client.CoreV1().Pods(f.ns).Get(ctx, step.name, metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			done = p
			return p.Status.Phase == corev1.PodSucceeded, fmt.Sprintf("on %q: %s", p.Spec.NodeName, p.Status.Phase), nil
		})
		if got := f.targetOf(done); got != step.target {
			t.Errorf("step %s ran in %s, want %s", step.name, got, step.target)
		}
		c := advClusterOfTarget(step.target)
		d, err := c.Client.CoreV1().Pods(f.ns).Get(ctx, proxy.ChaperonName(done, "cluster1"), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("step %s: its delegate in %s: %v", step.name, c.Context, err)
		}
		if d.CreationTimestamp.Time.Before(previousEnd.Truncate(time.Second)) {
			t.Errorf("step %s started at %s, before the step before ended (%s)", step.name, d.CreationTimestamp, previousEnd)
		}
		if step.input != "" && step.target != "c1" {
			// The input, as the step saw it in its own cluster.
			cm, err := c.Client.CoreV1().ConfigMaps(f.ns).Get(ctx, step.input, metav1.GetOptions{})
			if err != nil {
				t.Errorf("step %s: its input %s in %s: %v", step.name, step.input, c.Context, err)
			} else if cm.Data["from"] == "" || !cm.CreationTimestamp.Time.Before(d.CreationTimestamp.Add(time.Second)) {
				t.Errorf("step %s: input %s in %s: %v, created %s (delegate created %s)", step.name, step.input, c.Context, cm.Data, cm.CreationTimestamp, d.CreationTimestamp)
			}
		}
		previousEnd = done.Status.ContainerStatuses[0].State.Terminated.FinishedAt.Time
		// The step's output, in the source.
		out := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: step.name + "-output"}, Data: map[string]string{"from": step.name + "@" + step.target}}
		if _, err := c1.Client.CoreV1().ConfigMaps(f.ns).Create(ctx, out, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// Namespace-wide election: a plain Deployment, no annotation in its
// template, in a namespace annotated multicluster.admiralty.io/elect, runs
// across clusters.
func TestNamespaceWideElectionRunsAcrossClusters(t *testing.T) {
	c1 := sandbox.Clusters[0]
	ctx := testContext(t, 3*time.Minute)
	f := advFederate(t, ctx, "electall", "c1", "c2", "c3")
	patch := []byte(`{"metadata":{"annotations":{"multicluster.admiralty.io/elect":""}}}`)
	if _, err := c1.Client.CoreV1().Namespaces().Patch(ctx, f.ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata:
  name: plain
  namespace: %s
spec:
  replicas: 6
  selector:
    matchLabels:
      app: plain
  template:
    metadata:
      labels:
        app: plain
    spec:
      containers:
      - name: main
        image: nginx
        resources:
          requests:
            cpu: 500m
            memory: 32Mi
`, f.ns))
	got := advPlacement(ctx, t, f, "plain", 6)
	if len(got) < 2 {
		t.Errorf("replicas per target %v, want more than one cluster", got)
	}
}
