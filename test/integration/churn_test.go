package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	krand "k8s.io/apimachinery/pkg/util/rand"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
)

// Churn: proxies created and deleted in waves. Once the waves are over,
// the heap (after a forced GC) and the goroutine count of the source's
// scheduler and delegator and of a target's delegator are back near what
// they were after the first wave (which warms caches and connections up):
// nothing grows with the number of pods that came and went.
//
// Size: CHURN_PODS in all (default 600; the full size is 10000) in
// waves of CHURN_WAVE (default 200).
func TestChurn(t *testing.T) {
	c1, c2, c3 := sandbox.Clusters[0], sandbox.Clusters[1], sandbox.Clusters[2]
	total, wave := envInt("CHURN_PODS", 600), envInt("CHURN_WAVE", 200)
	waves := (total + wave - 1) / wave
	ctx := testContext(t, time.Duration(waves)*3*time.Minute+3*time.Minute)
	ns := "churn-" + krand.String(5)
	for _, c := range sandbox.Clusters {
		createNamespace(t, c, ns)
	}
	labelNamespace(t, c1, ns)
	mc1 := versioned.NewForConfigOrDie(c1.Config)
	adminTarget(ctx, t, c1, ns, "c2", c2, nil)
	adminTarget(ctx, t, c1, ns, "c3", c3, nil)
	waitTargetReady(ctx, t, mc1, ns, "c2")
	waitTargetReady(ctx, t, mc1, ns, "c3")

	// The delegators' profiles (--profiling), restarted for the test and
	// put back as they were afterwards; the scheduler's secure port serves
	// them already (--profiling defaults to true upstream).
	probes := []*profiled{
		delegatorProfiled(ctx, t, c1),
		schedulerProfiled(ctx, t, c1),
		delegatorProfiled(ctx, t, c2),
	}

	var base []profile
	start := time.Now()
	for w := 0; w < waves; w++ {
		n := wave
		if rest := total - w*wave; rest < n {
			n = rest
		}
		churnWave(ctx, t, c1, ns, w, n, c2, c3)
		if w == 0 {
			for _, p := range probes {
				base = append(base, p.settled(ctx, t))
			}
			t.Logf("MEASURE after the first wave: %v", base)
		}
	}
	t.Logf("MEASURE %d pods in %d waves in %s", total, waves, time.Since(start).Round(time.Second))
	for i, p := range probes {
		b := base[i]
		var last profile
		eventually(ctx, t, p.name+" back near its level after the first wave", func(ctx context.Context) (bool, string, error) {
			last = p.settled(ctx, t)
			ok := last.goroutines <= b.goroutines+25 && last.heapInuse <= b.heapInuse*3/2+16<<20
			return ok, fmt.Sprintf("now %v, after the first wave %v", last, b), nil
		})
		t.Logf("MEASURE %s: after the first wave %v, at the end %v", p.name, b, last)
	}
}

// churnWave creates n proxies, waits for them all to run, deletes them and
// waits until nothing is left of them on either side.
func churnWave(ctx context.Context, t *testing.T, c1 *Cluster, ns string, w, n int, targets ...*Cluster) {
	t.Helper()
	work := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				p := electedPod(ns, fmt.Sprintf("w%d-%04d", w, i))
				p.Labels = map[string]string{"app": "churn"}
				if _, err := c1.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitProxies(ctx, t, c1, ns, n, func(p *corev1.Pod) bool {
		return p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning
	}, fmt.Sprintf("wave %d: %d proxies Running", w, n))
	if err := c1.Client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=churn"}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, fmt.Sprintf("wave %d: proxies, chaperons and delegates gone", w), func(ctx context.Context) (bool, string, error) {
		left := 0
		pods, err := c1.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", err
		}
		left += len(pods.Items)
		for _, c := range targets {
			chs, err := versioned.NewForConfigOrDie(c.Config).MulticlusterV1alpha1().PodChaperons(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, "", err
			}
			delegates, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, "", err
			}
			left += len(chs.Items) + len(delegates.Items)
		}
		return left == 0, fmt.Sprintf("%d objects left", left), nil
	})
}

// profile is what a process uses: goroutines and in-use heap after a GC.
type profile struct {
	goroutines int
	heapInuse  int64
}

func (p profile) String() string {
	return fmt.Sprintf("%d goroutines, heap %.1f MiB", p.goroutines, float64(p.heapInuse)/(1<<20))
}

// profiled is a process whose /debug/pprof the test reads.
type profiled struct {
	name   string
	base   string
	client *http.Client
}

var (
	goroutineTotal = regexp.MustCompile(`goroutine profile: total (\d+)`)
	heapInuse      = regexp.MustCompile(`# HeapInuse = (\d+)`)
)

// settled reads the profile after a forced GC.
func (p *profiled) settled(ctx context.Context, t *testing.T) profile {
	t.Helper()
	heap := p.get(ctx, t, "/debug/pprof/heap?gc=1&debug=1")
	goroutines := p.get(ctx, t, "/debug/pprof/goroutine?debug=1")
	var out profile
	if m := goroutineTotal.FindStringSubmatch(goroutines); m != nil {
		out.goroutines, _ = strconv.Atoi(m[1])
	} else {
		t.Fatalf("%s: no goroutine total in %.200s", p.name, goroutines)
	}
	if m := heapInuse.FindStringSubmatch(heap); m != nil {
		out.heapInuse, _ = strconv.ParseInt(m[1], 10, 64)
	} else {
		t.Fatalf("%s: no HeapInuse in the heap profile", p.name)
	}
	return out
}

func (p *profiled) get(ctx context.Context, t *testing.T, path string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", p.name, path, resp.StatusCode, body)
	}
	return string(body)
}

// restartProfiled restarts a leader-elected component with extra flags
// (SIGTERM, so that it gives its Lease up), waits until it leads, and puts
// the sandbox's command line back when the test ends.
func restartProfiled(ctx context.Context, t *testing.T, comp component, c *Cluster, extra ...string) {
	t.Helper()
	original := comp.cmdline(t)
	leaseNS, lease := comp.lease(t)
	v := &crashVictim{component: comp, cluster: c, leaseNS: leaseNS, lease: lease}
	restart := func(args []string) {
		old := v.holder(ctx)
		if pid := comp.pid(); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(50 * time.Millisecond)
			}
			comp.kill(t)
		}
		comp.start(t, args)
		if lease == "" {
			health := comp.health
			if comp.scheduler {
				health = "https://127.0.0.1:" + flagsOf(original)["secure-port"] + "/healthz"
			}
			waitHealthy(ctx, t, comp.name, health)
			return
		}
		v.waitLeader(ctx, t, old)
	}
	t.Cleanup(func() { restart(original) })
	restart(append(append([]string{}, original...), extra...))
}

// delegatorProfiled restarts c's delegator with --profiling.
func delegatorProfiled(ctx context.Context, t *testing.T, c *Cluster) *profiled {
	t.Helper()
	comp := delegatorComponent(c)
	restartProfiled(ctx, t, comp, c, "--profiling")
	return &profiled{name: comp.name, base: c.DelegatorHealth, client: http.DefaultClient}
}

// schedulerProfiled restarts c's scheduler so that its secure port serves
// /debug/pprof without authentication (kube-scheduler profiles by default,
// but the sandbox's has no authentication kubeconfig).
func schedulerProfiled(ctx context.Context, t *testing.T, c *Cluster) *profiled {
	t.Helper()
	comp := schedulerComponent(c)
	port := ""
	for _, a := range comp.cmdline(t) {
		if v, ok := strings.CutPrefix(a, "--secure-port="); ok {
			port = v
		}
	}
	if port == "" {
		t.Fatalf("%s: no --secure-port in its command line", comp.name)
	}
	restartProfiled(ctx, t, comp, c, "--authorization-always-allow-paths=/debug/pprof/*")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // #nosec: a self-signed local scheduler
	return &profiled{name: comp.name, base: "https://127.0.0.1:" + port, client: client}
}
