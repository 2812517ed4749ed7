package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	krand "k8s.io/apimachinery/pkg/util/rand"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
)

// Crash safety: while pods are created and deleted, the source's scheduler,
// the source's delegator or a target's delegator is SIGKILLed at random
// points (seeded) and restarted with its command line, resuming from the
// API state only. In the end every proxy has exactly one chaperon and one
// delegate, in one target; nothing is left of deleted pods (no chaperon,
// delegate or stuck finalizer).
//
// Size: CRASH_PODS pods in all (default 300) over CRASH_KILLS kills
// (default 20), CRASH_SEED (default 1).
func TestCrashSafety(t *testing.T) {
	c1, c2, c3 := sandbox.Clusters[0], sandbox.Clusters[1], sandbox.Clusters[2]
	pods, kills, seed := envInt("CRASH_PODS", 300), envInt("CRASH_KILLS", 20), envInt("CRASH_SEED", 1)
	t.Logf("%d pods, %d kills, seed %d", pods, kills, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	ctx := testContext(t, 15*time.Minute)
	ns := "crash-" + krand.String(5)
	for _, c := range sandbox.Clusters {
		createNamespace(t, c, ns)
	}
	labelNamespace(t, c1, ns)
	mc1 := versioned.NewForConfigOrDie(c1.Config)
	for _, dst := range []*Cluster{c2, c3} {
		adminTarget(ctx, t, c1, ns, "c"+dst.Context[len(dst.Context)-1:], dst, nil)
	}
	waitTargetReady(ctx, t, mc1, ns, "c2")
	waitTargetReady(ctx, t, mc1, ns, "c3")

	victims := []*crashVictim{
		newCrashVictim(t, schedulerComponent(c1), c1, []string{
			"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms"}),
		newCrashVictim(t, delegatorComponent(c1), c1, []string{
			"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms"}),
		newCrashVictim(t, delegatorComponent(c2), c2, []string{
			"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms"}),
	}

	created, deleted := 0, 0
	var names []string
	survived := map[string]int{}
	start := time.Now()
	for i := 0; i < kills; i++ {
		batch := pods / kills
		if i < pods%kills {
			batch++
		}
		for j := 0; j < batch; j++ {
			name := fmt.Sprintf("p-%03d", created)
			created++
			if _, err := c1.Client.CoreV1().Pods(ns).Create(ctx, electedPod(ns, name), metav1.CreateOptions{}); err != nil {
				// The webhook of a delegator just killed refuses explicitly
				// elected pods (failurePolicy Fail): a controller would retry.
				if _, err = createRetrying(ctx, c1, electedPod(ns, name)); err != nil {
					t.Fatal(err)
				}
			}
			names = append(names, name)
		}
		// Some deletions in flight too.
		for j := 0; j < batch/5 && len(names) > 0; j++ {
			k := rng.IntN(len(names))
			if err := c1.Client.CoreV1().Pods(ns).Delete(ctx, names[k], metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			names = append(names[:k], names[k+1:]...)
			deleted++
		}
		time.Sleep(time.Duration(rng.IntN(2000)) * time.Millisecond)
		v := victims[rng.IntN(len(victims))]
		v.crash(ctx, t)
		survived[v.component.name]++
	}
	t.Logf("MEASURE %d kills survived (%v) in %s; %d pods created, %d deleted", kills, survived, time.Since(start).Round(time.Second), created, deleted)

	waitProxies(ctx, t, c1, ns, len(names), func(p *corev1.Pod) bool {
		return p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning
	}, fmt.Sprintf("all %d remaining proxies bound and Running", len(names)))
	eventually(ctx, t, "deleted proxies gone (no finalizer, no Terminating pod left)", func(ctx context.Context) (bool, string, error) {
		list, err := c1.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", err
		}
		return len(list.Items) == len(names), fmt.Sprintf("%d pods, want %d", len(list.Items), len(names)), nil
	})
	checkOneDelegateEach(ctx, t, ns, c1, c2, c3)
	t.Logf("MEASURE converged %s after the first kill", time.Since(start).Round(time.Second))
}

// createRetrying creates pod, retrying while the webhook is down.
func createRetrying(ctx context.Context, c *Cluster, pod *corev1.Pod) (*corev1.Pod, error) {
	var err error
	for i := 0; i < 100; i++ {
		var p *corev1.Pod
		p, err = c.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err == nil {
			return p, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, err
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// crashVictim is a leader-elected component that the test kills and
// restarts with its command line plus shorter leader election timings (so
// that a restarted process takes over in seconds); when the test ends it is
// restarted gracefully with its original command line.
type crashVictim struct {
	component component
	cluster   *Cluster
	leaseNS   string
	lease     string
	original  []string
	fast      []string
}

func newCrashVictim(t *testing.T, comp component, c *Cluster, fastFlags []string) *crashVictim {
	t.Helper()
	original := comp.cmdline(t)
	leaseNS, lease := comp.lease(t)
	if lease == "" {
		t.Fatalf("%s runs without leader election: nothing to take over", comp.name)
	}
	v := &crashVictim{component: comp, cluster: c, leaseNS: leaseNS, lease: lease, original: original,
		fast: append(append([]string{}, original...), fastFlags...)}
	t.Cleanup(func() {
		// Back to the sandbox's own command line; SIGTERM releases the
		// Lease so that the successor starts at once.
		ctx := testContext(t, 2*time.Minute)
		if pid := comp.pid(); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(50 * time.Millisecond)
			}
			comp.kill(t)
		}
		comp.start(t, original)
		v.waitLeader(ctx, t, "")
	})
	return v
}

// crash SIGKILLs the component, restarts it and waits until it leads.
func (v *crashVictim) crash(ctx context.Context, t *testing.T) {
	t.Helper()
	old := v.holder(ctx)
	v.component.kill(t)
	v.component.start(t, v.fast)
	v.waitLeader(ctx, t, old)
}

func (v *crashVictim) holder(ctx context.Context) string {
	l, err := v.cluster.Client.CoordinationV1().Leases(v.leaseNS).Get(ctx, v.lease, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// waitLeader waits until the Lease has a holder other than old (a killed
// process never gives its Lease back).
func (v *crashVictim) waitLeader(ctx context.Context, t *testing.T, old string) {
	t.Helper()
	eventually(ctx, t, v.component.name+" leads again", func(ctx context.Context) (bool, string, error) {
		if !v.component.alive() {
			return false, "", fmt.Errorf("%s exited; see %s", v.component.name, v.component.logFile)
		}
		h := v.holder(ctx)
		return h != "" && h != old, "holder " + h, nil
	})
}
