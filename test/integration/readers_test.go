package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/delegator/failover"
)

// The source's delegator restarts while a target is down: its cache of the
// target's chaperons never syncs, which says nothing of them. Nothing bound
// there is deleted before the Target's grace period, even when the proxies
// change meanwhile (the feedback once took an empty cache for lost
// chaperons and deleted a proxy 10 s after it looked at it); then the Deployment's proxies move to the other target, the
// bare pod never goes. When the target is back, every proxy has exactly one
// delegate, and the bare pod runs on as before.
func TestDelegatorRestartWhileTargetDown(t *testing.T) {
	c1, c2, c3 := sandbox.Clusters[0], sandbox.Clusters[1], sandbox.Clusters[2]
	ctx := testContext(t, 10*time.Minute)
	ns := "restart-" + rand.String(5)
	for _, c := range sandbox.Clusters {
		createNamespace(t, c, ns)
	}
	labelNamespace(t, c1, ns)
	mc1 := versioned.NewForConfigOrDie(c1.Config)
	vnode := func(name string) string { return "admiralty-namespace-" + ns + "-" + name }

	const grace = 45
	adminTarget(ctx, t, c1, ns, "c3", c3, ptr.To[int64](grace))
	waitTargetReady(ctx, t, mc1, ns, "c3")
	waitNodeReady(ctx, t, c1, vnode("c3"))
	if _, err := c1.Client.AppsV1().Deployments(ns).Create(ctx, electedDeployment(ns, "web", 3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Client.CoreV1().Pods(ns).Create(ctx, electedPod(ns, "solo"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := waitProxies(ctx, t, c1, ns, 4, func(p *corev1.Pod) bool {
		return p.Spec.NodeName == vnode("c3") && p.Status.Phase == corev1.PodRunning
	}, "4 proxies Running on c3")
	adminTarget(ctx, t, c1, ns, "c2", c2, nil)
	waitTargetReady(ctx, t, mc1, ns, "c2")
	waitNodeReady(ctx, t, c1, vnode("c2"))

	// c3 down, then the source's delegator killed and started again: it
	// comes up with c3 unreachable.
	delegator := newCrashVictim(t, delegatorComponent(c1), c1, []string{
		"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms"})
	restore := stopCluster(t, c3)
	delegator.crash(ctx, t)
	restarted := time.Now()

	// Until the grace period from the node's NotReady is over (less a
	// margin for this loop), every proxy stays where it was.
	var notReadySince time.Time
	eventually(ctx, t, "virtual node of c3 NotReady", func(ctx context.Context) (bool, string, error) {
		n, err := c1.Client.CoreV1().Nodes().Get(ctx, vnode("c3"), metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		since, notReady := failover.NotReadySince(n)
		notReadySince = since
		return notReady, "Ready", nil
	})
	// The node's status is the new leader's: c3 is live in its registry.
	// An ordinary update of each proxy (a label) has the feedback look at
	// it now, with nothing in its cache of c3.
	for _, p := range before {
		patch := []byte(`{"metadata":{"labels":{"touched":"yes"}}}`)
		if _, err := c1.Client.CoreV1().Pods(ns).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	keepUntil := notReadySince.Add(grace*time.Second - 3*time.Second)
	t.Logf("c3 NotReady since %s (%s before the restart); proxies must stay until %s", notReadySince.Format(time.RFC3339),
		restarted.Sub(notReadySince).Round(time.Second), keepUntil.Format(time.RFC3339))
	checks := 0
	for time.Now().Before(keepUntil) {
		pods, err := c1.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range before {
			if problem := kept(p, pods.Items, vnode("c3")); problem != "" {
				t.Fatalf("%s after the restart, within the grace period: %s", time.Since(restarted).Round(time.Second), problem)
			}
		}
		checks++
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Second):
		}
	}
	t.Logf("all %d proxies kept on c3 for %s after the restart (%d checks)", len(before), time.Since(restarted).Round(time.Second), checks)

	// After it: the Deployment's proxies move to c2, the bare pod stays.
	oldUIDs := map[types.UID]bool{}
	for _, p := range before {
		oldUIDs[p.UID] = true
	}
	waitProxies(ctx, t, c1, ns, 3, func(p *corev1.Pod) bool {
		return p.Labels["app"] == "web" && !oldUIDs[p.UID] && p.Spec.NodeName == vnode("c2") && p.Status.Phase == corev1.PodRunning
	}, "the Deployment's 3 proxies recreated and Running on c2")
	waitEvent(ctx, t, c1, ns, "Pod", "solo", failover.ReasonKeptWithoutController)
	var solo corev1.Pod
	for _, p := range before {
		if p.Name == "solo" {
			solo = p
		}
	}

	// c3 back: what lost its proxy is deleted there, the bare pod is the
	// same pod, Running.
	restore()
	waitNodeReady(ctx, t, c1, vnode("c3"))
	waitTargetReady(ctx, t, mc1, ns, "c3")
	checkOneDelegateEach(ctx, t, ns, c1, c2, c3)
	waitProxies(ctx, t, c1, ns, 1, func(p *corev1.Pod) bool {
		return p.UID == solo.UID && p.Spec.NodeName == vnode("c3") && p.Status.Phase == corev1.PodRunning
	}, "the bare pod, the same, Running on c3")
}

// kept tells what is wrong with proxy p among pods: gone, being deleted or
// elsewhere than node.
func kept(p corev1.Pod, pods []corev1.Pod, node string) string {
	for _, q := range pods {
		if q.UID != p.UID {
			continue
		}
		var problems []string
		if q.DeletionTimestamp != nil {
			problems = append(problems, "being deleted")
		}
		if q.Spec.NodeName != node {
			problems = append(problems, "on "+q.Spec.NodeName)
		}
		if len(problems) == 0 {
			return ""
		}
		return fmt.Sprintf("proxy %s %s", p.Name, strings.Join(problems, ", "))
	}
	return fmt.Sprintf("proxy %s deleted", p.Name)
}
