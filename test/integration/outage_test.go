package integration

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// A target whose cluster stops: its virtual node turns NotReady and is
// tainted unreachable, no new proxy goes there, its proxies stay for the
// Target's grace period, then those a controller owns are deleted and
// recreated in the target that answers, while a bare pod is kept. When the
// cluster is back, what lost its proxy meanwhile is deleted there: every
// proxy ends with exactly one delegate, in one cluster.
func TestTargetOutage(t *testing.T) {
	testOutage(t, "outage-", stopCluster)
}

// A target whose API server is frozen (SIGSTOP: connections are accepted by
// the kernel but nothing answers, as in a network partition that drops
// packets) is detected like one that refuses connections, and the same
// failover follows; when it answers again, nothing is duplicated or left.
func TestTargetFrozen(t *testing.T) {
	testOutage(t, "frozen-", freezeCluster)
}

// testOutage runs the outage scenario, cutting cluster3 off with cut.
func testOutage(t *testing.T, prefix string, cut func(*testing.T, *Cluster) (restore func())) {
	c1, c2, c3 := sandbox.Clusters[0], sandbox.Clusters[1], sandbox.Clusters[2]
	ctx := testContext(t, 10*time.Minute)
	ns := prefix + rand.String(5)
	for _, c := range sandbox.Clusters {
		createNamespace(t, c, ns)
	}
	labelNamespace(t, c1, ns)
	mc1 := versioned.NewForConfigOrDie(c1.Config)
	vnode := func(name string) string { return "admiralty-namespace-" + ns + "-" + name }

	// First c3 alone, so that everything runs there.
	const grace = 30
	adminTarget(ctx, t, c1, ns, "c3", c3, ptr.To[int64](grace))
	waitTargetReady(ctx, t, mc1, ns, "c3")
	waitNodeReady(ctx, t, c1, vnode("c3"))
	deploy := electedDeployment(ns, "web", 4)
	if _, err := c1.Client.AppsV1().Deployments(ns).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	solo := electedPod(ns, "solo")
	if _, err := c1.Client.CoreV1().Pods(ns).Create(ctx, solo, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := waitProxies(ctx, t, c1, ns, 5, func(p *corev1.Pod) bool {
		return p.Spec.NodeName == vnode("c3") && p.Status.Phase == corev1.PodRunning
	}, "5 proxies Running on c3")

	// Then c2, which will take over.
	adminTarget(ctx, t, c1, ns, "c2", c2, nil)
	waitTargetReady(ctx, t, mc1, ns, "c2")
	waitNodeReady(ctx, t, c1, vnode("c2"))

	stopped := time.Now()
	restore := cut(t, c3)
	eventually(ctx, t, "virtual node of c3 NotReady and tainted unreachable", func(ctx context.Context) (bool, string, error) {
		n, err := c1.Client.CoreV1().Nodes().Get(ctx, vnode("c3"), metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		ready, taints := "", []string{}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				ready = string(cond.Status) + " " + cond.Reason
			}
		}
		unreachable := false
		for _, taint := range n.Spec.Taints {
			taints = append(taints, taint.ToString())
			if taint.Key == corev1.TaintNodeUnreachable && taint.Effect == corev1.TaintEffectNoSchedule {
				unreachable = true
			}
		}
		return !strings.HasPrefix(ready, "True") && unreachable, fmt.Sprintf("Ready %s, taints %v", ready, taints), nil
	})
	t.Logf("MEASURE time to NotReady and tainted unreachable: %s", time.Since(stopped).Round(time.Second))
	cond := waitCondition(ctx, t, mc1, ns, "c3", metav1.ConditionFalse, "Unreachable")
	t.Logf("Target c3: %s", cond.Message)

	// Within the grace period: kept where they are.
	pods, err := c1.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range before {
		found := false
		for _, q := range pods.Items {
			found = found || (q.UID == p.UID && q.DeletionTimestamp == nil && q.Spec.NodeName == vnode("c3"))
		}
		if !found {
			t.Errorf("proxy %s was not kept on c3 during the grace period", p.Name)
		}
	}
	// No new proxy goes to the unreachable target.
	fresh := electedPod(ns, "fresh")
	if _, err := c1.Client.CoreV1().Pods(ns).Create(ctx, fresh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "new pod bound", func(ctx context.Context) (bool, string, error) {
		p, err := c1.Client.CoreV1().Pods(ns).Get(ctx, "fresh", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		if p.Spec.NodeName != "" && p.Spec.NodeName != vnode("c2") {
			return false, "", fmt.Errorf("a new pod was bound to %s while c3 was unreachable", p.Spec.NodeName)
		}
		return p.Spec.NodeName == vnode("c2"), "not bound yet", nil
	})

	// After the grace period: the Deployment's proxies move to c2; the bare
	// pod stays, with an Event saying why.
	oldUIDs := map[types.UID]bool{}
	for _, p := range before {
		oldUIDs[p.UID] = true
	}
	waitProxies(ctx, t, c1, ns, 4, func(p *corev1.Pod) bool {
		return p.Labels["app"] == "web" && !oldUIDs[p.UID] && p.Spec.NodeName == vnode("c2") && p.Status.Phase == corev1.PodRunning
	}, "the Deployment's 4 proxies recreated and Running on c2")
	t.Logf("MEASURE time to reschedule (grace period %ds): %s", grace, time.Since(stopped).Round(time.Second))
	s, err := c1.Client.CoreV1().Pods(ns).Get(ctx, "solo", metav1.GetOptions{})
	if err != nil || s.Spec.NodeName != vnode("c3") {
		t.Fatalf("bare pod: %v %v, want it kept on c3", err, s)
	}
	waitEvent(ctx, t, c1, ns, "Pod", "solo", "KeptWithoutController")

	// Back: the chaperons and delegates of the deleted proxies go; every
	// proxy has exactly one delegate.
	restore()
	waitNodeReady(ctx, t, c1, vnode("c3"))
	waitTargetReady(ctx, t, mc1, ns, "c3")
	checkOneDelegateEach(ctx, t, ns, c1, c2, c3)
}

// adminTarget creates Target name in ns of c1 that reaches cluster dst with
// its admin kubeconfig.
func adminTarget(ctx context.Context, t *testing.T, c1 *Cluster, ns, name string, dst *Cluster, grace *int64) {
	t.Helper()
	admin, err := os.ReadFile(dst.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string][]byte{"config": admin}}
	if _, err := c1.Client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	target := &v1alpha1.Target{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.TargetSpec{
			KubeconfigSecret:              &v1alpha1.KubeconfigSecret{Name: name},
			UnreachableGracePeriodSeconds: grace,
		},
	}
	mc := versioned.NewForConfigOrDie(c1.Config)
	if _, err := mc.MulticlusterV1alpha1().Targets(ns).Create(ctx, target, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func electedPodSpec() corev1.PodSpec {
	return corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "main", Image: "busybox",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: mustParse("10m"), corev1.ResourceMemory: mustParse("8Mi"),
			}},
		}},
		Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}},
	}
}

func electedPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{v1alpha1.AnnotationElect: ""}},
		Spec:       electedPodSpec(),
	}
}

func electedDeployment(ns, name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{v1alpha1.AnnotationElect: ""}},
				Spec:       electedPodSpec(),
			},
		},
	}
}

// waitProxies waits until exactly want proxies of ns (not being deleted)
// match ok, and returns them.
func waitProxies(ctx context.Context, t *testing.T, c *Cluster, ns string, want int, ok func(*corev1.Pod) bool, what string) []corev1.Pod {
	t.Helper()
	var out []corev1.Pod
	eventually(ctx, t, what, func(ctx context.Context) (bool, string, error) {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelIsProxy + "=true"})
		if err != nil {
			return false, "", err
		}
		out = out[:0]
		var seen []string
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && ok(&p) {
				out = append(out, p)
			}
			seen = append(seen, fmt.Sprintf("%s@%s:%s", p.Name, p.Spec.NodeName, p.Status.Phase))
		}
		return len(out) == want, fmt.Sprintf("%d match; %v", len(out), seen), nil
	})
	return out
}

// checkOneDelegateEach waits until every proxy of ns in src has exactly one
// chaperon and one delegate among the targets, and nothing else is there:
// no orphan, no duplicate.
func checkOneDelegateEach(ctx context.Context, t *testing.T, ns string, src *Cluster, targets ...*Cluster) {
	t.Helper()
	eventually(ctx, t, "exactly one chaperon and delegate per proxy, no orphan", func(ctx context.Context) (bool, string, error) {
		proxies, err := src.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelIsProxy + "=true"})
		if err != nil {
			return false, "", err
		}
		want := map[string]bool{}
		for _, p := range proxies.Items {
			if p.DeletionTimestamp == nil {
				want[string(p.UID)] = true
			}
		}
		chaperons, delegates := map[string]int{}, map[string]int{}
		var problems []string
		for _, c := range targets {
			mc := versioned.NewForConfigOrDie(c.Config)
			chs, err := mc.MulticlusterV1alpha1().PodChaperons(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, "", err
			}
			for _, ch := range chs.Items {
				chaperons[ch.Labels[v1alpha1.LabelParentUID]]++
				if ch.DeletionTimestamp != nil {
					problems = append(problems, c.Context+" chaperon "+ch.Name+" deleting")
				}
			}
			pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, "", err
			}
			for _, p := range pods.Items {
				delegates[p.Labels[v1alpha1.LabelParentUID]]++
				if p.DeletionTimestamp != nil {
					problems = append(problems, c.Context+" delegate "+p.Name+" deleting")
				}
			}
		}
		for uid := range want {
			if chaperons[uid] != 1 || delegates[uid] != 1 {
				problems = append(problems, fmt.Sprintf("proxy %s: %d chaperons, %d delegates", uid, chaperons[uid], delegates[uid]))
			}
		}
		for uid := range chaperons {
			if !want[uid] {
				problems = append(problems, "orphan chaperon of "+uid)
			}
		}
		for uid := range delegates {
			if !want[uid] {
				problems = append(problems, "orphan delegate of "+uid)
			}
		}
		sort.Strings(problems)
		return len(problems) == 0, fmt.Sprintf("%d proxies; %v", len(want), problems), nil
	})
}
