package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	wh "admiralty.io/multicluster-scheduler/delegator/webhook"
)

// TestLeaderFailover runs a second replica of cluster1's scheduler and
// delegator (the sandbox's own arguments, identity and configuration, other
// ports), kills the leaders by pid (SIGKILL: no lease release, as when a
// node dies), and checks that the standbys take over and that pods keep
// being scheduled, none twice: every proxy has exactly one PodChaperon and
// one delegate over the two targets, and the proxies placed before the
// failover keep theirs.
func TestLeaderFailover(t *testing.T) {
	c1, c2, c3 := sandbox.Clusters[0], sandbox.Clusters[1], sandbox.Clusters[2]
	ctx := testContext(t, 6*time.Minute)
	ns := "failover-" + rand.String(5)
	for _, c := range []*Cluster{c1, c2, c3} {
		createNamespace(t, c, ns)
	}
	mc1 := versioned.NewForConfigOrDie(c1.Config)
	for _, dst := range []*Cluster{c2, c3} {
		applySource(t, dst, ns)
		name := "c" + strings.TrimPrefix(dst.Context, "cluster")
		exchangeWithKubectlAndJq(t, ctx, ns, dst.Context, name)
		kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: multicluster.admiralty.io/v1alpha1
kind: Target
metadata:
  name: %s
  namespace: %s
spec:
  kubeconfigSecret:
    name: %[1]s
`, name, ns))
		waitTargetReady(ctx, t, mc1, ns, name)
		waitNodeReady(ctx, t, c1, "admiralty-namespace-"+ns+"-"+name)
	}
	labelNamespace(t, c1, ns)

	// The standbys: the running processes' command lines, with ports of
	// their own.
	delegator := &replica{name: "delegator", pidFile: c1.DelegatorPidFile}
	scheduler := &replica{name: "scheduler", pidFile: filepath.Join(c1.KwokWorkdir, "pids", "kube-scheduler.pid")}
	delegator.args, scheduler.args = delegator.cmdline(t), scheduler.cmdline(t)
	delegatorMetrics := c1.DelegatorHealth + "/metrics"
	schedulerMetrics := schedulerHealthURL(t, scheduler.args) + "/metrics"
	restoreOnCleanup(t, c1, delegator, scheduler)

	port := func() string { return strconv.Itoa(freePort(t)) }
	health, webhook, kubelet, secure := port(), port(), port(), port()
	standbyDelegator := &replica{name: "standby delegator", log: filepath.Join(c1.Dir, "standby-delegator.log"), args: withFlags(delegator.args, map[string]string{
		"--health-addr":  "127.0.0.1:" + health,
		"--webhook-addr": "127.0.0.1:" + webhook,
		"--webhook-url":  "https://127.0.0.1:" + webhook + "/mutate-pods",
		"--kubelet-addr": "127.0.0.1:" + kubelet,
	})}
	standbyScheduler := &replica{name: "standby scheduler", log: filepath.Join(c1.Dir, "standby-scheduler.log"), args: withFlags(scheduler.args, map[string]string{
		"--secure-port": secure,
	})}
	standbyDelegator.start(t)
	standbyScheduler.start(t)
	standbyDelegatorMetrics := "http://127.0.0.1:" + health + "/metrics"
	standbySchedulerMetrics := "https://127.0.0.1:" + secure + "/metrics"

	// One leader each: the sandbox's processes, which held the Leases.
	waitLeader(ctx, t, "delegator", delegatorMetrics, standbyDelegatorMetrics)
	waitLeader(ctx, t, "scheduler", schedulerMetrics, standbySchedulerMetrics)

	// Pods scheduled by the first leaders.
	pods := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := c1.Client.CoreV1().Pods(ns).Create(ctx, failoverPod(ns, fmt.Sprintf("p%d", i)), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	pods(0, 3)
	before := waitOneDelegateEach(ctx, t, c1, ns, 3, c2, c3)

	// Kill both leaders; the standbys take over within a lease duration.
	delegator.kill(t)
	scheduler.kill(t)
	t.Logf("killed the leaders: delegator pid %d, scheduler pid %d", delegator.pid, scheduler.pid)
	waitLeader(ctx, t, "delegator after the failover", standbyDelegatorMetrics)
	waitLeader(ctx, t, "scheduler after the failover", standbySchedulerMetrics)
	// The sandbox's webhook configuration names one process's address
	// (--webhook-url), not a Service in front of every replica as the chart
	// does: the new leader points it at its own once it leads, and the API
	// server follows its change by watch.
	standbyURL := "https://127.0.0.1:" + webhook + "/mutate-pods"
	eventually(ctx, t, "the webhook configuration names the new leader", func(ctx context.Context) (bool, string, error) {
		cfg, err := c1.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, wh.ConfigurationName, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		var urls []string
		for _, w := range cfg.Webhooks {
			if w.ClientConfig.URL != nil {
				urls = append(urls, *w.ClientConfig.URL)
			}
		}
		return len(urls) == len(cfg.Webhooks) && !slices.ContainsFunc(urls, func(u string) bool { return u != standbyURL }), strings.Join(urls, ", "), nil
	})
	eventually(ctx, t, "the API server calls the new leader's webhook", func(ctx context.Context) (bool, string, error) {
		_, err := c1.Client.CoreV1().Pods(ns).Create(ctx, failoverPod(ns, "probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil, fmt.Sprint(err), nil
	})

	// Pods created after the failover are admitted by the new leader's
	// webhook configuration, scheduled by the new scheduler and delegated by
	// the new delegator; none of the earlier ones is placed again.
	pods(3, 6)
	after := waitOneDelegateEach(ctx, t, c1, ns, 6, c2, c3)
	for uid, where := range before {
		if after[uid] != where {
			t.Errorf("proxy %s: delegate %s before the failover, %s after", uid, where, after[uid])
		}
	}

	// The new leaders' metrics count what they did: the scheduler placed
	// the last three pods, each after one attempt; the delegator sees six
	// running delegates and both targets ready.
	targetsOf := `target="` + ns + `/c[23]"`
	eventually(ctx, t, "the new scheduler's metrics", func(context.Context) (bool, string, error) {
		m := scrape(standbySchedulerMetrics)
		got := sumMetric(m, `admiralty_proxy_scheduling_attempts_total\{result="scheduled",`+targetsOf+`\}`)
		wait := sumMetric(m, `admiralty_proxy_candidate_wait_seconds_count\{result="scheduled",`+targetsOf+`\}`)
		other := sumMetric(m, `admiralty_proxy_scheduling_attempts_total\{result="(refused|timeout|error)",`+targetsOf+`\}`)
		return got == 3 && wait == 3 && other == 0, fmt.Sprintf("scheduled %v, candidate waits %v, failed %v", got, wait, other), nil
	})
	eventually(ctx, t, "the new delegator's metrics", func(context.Context) (bool, string, error) {
		m := scrape(standbyDelegatorMetrics)
		running := sumMetric(m, `admiralty_delegates\{phase="Running",`+targetsOf+`\}`)
		ready := sumMetric(m, `admiralty_target_ready\{`+targetsOf+`\}`)
		return running == 6 && ready == 2, fmt.Sprintf("running delegates %v, ready targets %v", running, ready), nil
	})
	// Each pod scheduled after the failover says where it went.
	for i := 3; i < 6; i++ {
		name := fmt.Sprintf("p%d", i)
		eventually(ctx, t, name+": Scheduled event naming a target's virtual node", func(ctx context.Context) (bool, string, error) {
			evs, err := podEvents(ctx, c1, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
			if err != nil {
				return false, "", err
			}
			for _, e := range evs {
				if e.Reason == "Scheduled" && strings.Contains(e.Message, " to admiralty-namespace-"+ns+"-c") {
					return true, "", nil
				}
			}
			return false, summarizeEvents(evs), nil
		})
	}

	// The operator's view: kubectl admiralty status and describe pod.
	status := kubectlAdmiralty(ctx, t, "status", "--context", "cluster1", "-n", ns)
	proxies := 0
	for _, target := range []string{ns + "/c2", ns + "/c3"} {
		var row []string
		for _, line := range strings.Split(status, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == target {
				row = f
			}
		}
		// TARGET KIND READY REASON NODE NODE-READY CPU MEMORY PODS PROXIES RUNNING ...
		if len(row) != 14 || row[2] != "True" || row[3] != "Connected" || row[4] != "admiralty-namespace-"+ns+"-"+lastSegment(target) || row[5] != "True" || row[6] != "12/12" {
			t.Fatalf("status: row of %s: %q\n%s", target, row, status)
		}
		n, _ := strconv.Atoi(row[9])
		proxies += n
	}
	if proxies != 6 {
		t.Errorf("status: %d proxies over the two targets, want 6\n%s", proxies, status)
	}
	describe := kubectlAdmiralty(ctx, t, "describe", "pod", "p3", "--context", "cluster1", "-n", ns)
	for _, want := range []string{"PROXY", "CHAPERON (" + ns + "/c", "DELEGATE (" + ns + "/c", "Running", "Scheduled"} {
		if !strings.Contains(describe, want) {
			t.Errorf("describe pod p3: no %q in\n%s", want, describe)
		}
	}
	// The target's own Events, read with the Target's credentials: its
	// scheduler placed the delegate.
	if !regexp.MustCompile(`(?m)^\s+delegate\s+Normal\s+Scheduled\s`).MatchString(describe) {
		t.Errorf("describe pod p3: no Scheduled Event of the delegate in\n%s", describe)
	}
	t.Logf("kubectl admiralty status:\n%s\nkubectl admiralty describe pod p3:\n%s", status, describe)
}

func kubectlAdmiralty(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(sandbox.Bin, "kubectl-admiralty"), append(args, "--kubeconfig", sandbox.Kubeconfig)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl admiralty %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func scrape(url string) string {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// sumMetric adds up the samples whose name and labels match the pattern
// (labels in Prometheus' order: sorted by name).
func sumMetric(text, pattern string) float64 {
	re := regexp.MustCompile(`(?m)^` + pattern + ` ([0-9.e+-]+)$`)
	var sum float64
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		sum += v
	}
	return sum
}

func failoverPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{v1alpha1.AnnotationElect: ""}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "main", Image: "nginx",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: mustParse("100m")}},
		}}},
	}
}

// waitOneDelegateEach waits for `want` bound proxies in ns and for each to
// have exactly one PodChaperon and one delegate over the targets, and
// returns where each proxy's delegate is (by proxy UID: cluster/delegate
// UID). It fails at once on a proxy with two chaperons or two delegates.
func waitOneDelegateEach(ctx context.Context, t *testing.T, src *Cluster, ns string, want int, targets ...*Cluster) map[string]string {
	t.Helper()
	where := map[string]string{}
	eventually(ctx, t, fmt.Sprintf("%d proxies with one delegate each", want), func(ctx context.Context) (bool, string, error) {
		proxies, err := src.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelIsProxy + "=true"})
		if err != nil {
			return false, "", err
		}
		bound := 0
		for _, p := range proxies.Items {
			if p.Spec.NodeName != "" {
				bound++
			}
		}
		chaperons := map[string]int{}
		delegates := map[string][]string{}
		for _, c := range targets {
			cl, err := versioned.NewForConfigOrDie(c.Config).MulticlusterV1alpha1().PodChaperons(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, "", err
			}
			for _, ch := range cl.Items {
				chaperons[ch.Labels[v1alpha1.LabelParentUID]]++
			}
			dl, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelParentUID})
			if err != nil {
				return false, "", err
			}
			for _, d := range dl.Items {
				uid := d.Labels[v1alpha1.LabelParentUID]
				delegates[uid] = append(delegates[uid], c.Context+"/"+string(d.UID))
			}
		}
		for uid, n := range chaperons {
			if n > 1 {
				return false, "", fmt.Errorf("proxy %s has %d PodChaperons", uid, n)
			}
		}
		for uid, d := range delegates {
			if len(d) > 1 {
				return false, "", fmt.Errorf("proxy %s has %d delegates: %v", uid, len(d), d)
			}
		}
		state := fmt.Sprintf("%d proxies, %d bound, %d chaperons, %d delegates", len(proxies.Items), bound, len(chaperons), len(delegates))
		if len(proxies.Items) != want || bound != want || len(delegates) != want {
			return false, state, nil
		}
		for _, p := range proxies.Items {
			d := delegates[string(p.UID)]
			if len(d) != 1 || chaperons[string(p.UID)] != 1 {
				return false, state + ", proxy " + p.Name + " not delegated yet", nil
			}
			where[string(p.UID)] = d[0]
		}
		return true, state, nil
	})
	return where
}

// waitLeader waits until the process whose metrics are at leader reports
// that it leads (leader_election_master_status 1) and none of the others
// does.
func waitLeader(ctx context.Context, t *testing.T, what, leader string, others ...string) {
	t.Helper()
	eventually(ctx, t, what+": one leader", func(ctx context.Context) (bool, string, error) {
		if !leads(leader) {
			return false, leader + " does not lead", nil
		}
		for _, o := range others {
			if leads(o) {
				return false, "", fmt.Errorf("%s and %s both lead", leader, o)
			}
		}
		return true, "", nil
	})
}

var masterStatus = regexp.MustCompile(`(?m)^leader_election_master_status\{[^}]*\} 1$`)

func leads(metricsURL string) bool {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get(metricsURL)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && masterStatus.Match(body)
}

// replica is a scheduler or delegator process run by this test, or one of
// the sandbox's (found by its pid file).
type replica struct {
	name    string
	pidFile string // the sandbox's
	log     string
	args    []string
	pid     int
}

func (r *replica) readPid(t *testing.T) int {
	data, err := os.ReadFile(r.pidFile)
	if err != nil {
		t.Fatalf("%s: %v", r.name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("%s: pid file %s: %v", r.name, r.pidFile, err)
	}
	return pid
}

func (r *replica) cmdline(t *testing.T) []string {
	t.Helper()
	r.pid = r.readPid(t)
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.pid))
	if err != nil {
		t.Fatalf("%s: pid %d: %v", r.name, r.pid, err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

// start runs the replica in a session of its own; the test's cleanup
// stops it.
func (r *replica) start(t *testing.T) {
	t.Helper()
	out, err := os.OpenFile(r.log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(r.args[0], r.args[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", r.name, err)
	}
	r.pid = cmd.Process.Pid
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		// SIGTERM: a graceful stop releases the Lease, so that the
		// sandbox's processes take over again at once.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

func (r *replica) kill(t *testing.T) {
	t.Helper()
	_ = syscall.Kill(r.pid, syscall.SIGKILL)
	for i := 0; i < 200 && syscall.Kill(r.pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if syscall.Kill(r.pid, 0) == nil {
		t.Fatalf("%s: pid %d survived SIGKILL", r.name, r.pid)
	}
}

func (r *replica) alive() bool {
	return r.pid > 0 && syscall.Kill(r.pid, 0) == nil
}

// restoreOnCleanup starts the sandbox's scheduler and delegator again with
// their command lines, if the test killed them, and records their new pids
// where hack/sandbox.sh looks for them. Registered before the standbys
// start, it runs after they stopped (cleanups run last in, first out), so
// the restored processes lead again at once.
func restoreOnCleanup(t *testing.T, c *Cluster, procs ...*replica) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, p := range procs {
			if p.alive() {
				continue
			}
			log := filepath.Join(c.Dir, "delegator.log")
			if p.name == "scheduler" {
				log = filepath.Join(c.KwokWorkdir, "logs", "kube-scheduler.log")
			}
			out, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				t.Error(err)
				continue
			}
			cmd := exec.Command(p.args[0], p.args[1:]...)
			cmd.Stdout, cmd.Stderr = out, out
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			err = cmd.Start()
			out.Close()
			if err != nil {
				t.Errorf("restarting the sandbox's %s: %v", p.name, err)
				continue
			}
			go func() { _ = cmd.Wait() }()
			if err := os.WriteFile(p.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
				t.Error(err)
			}
			t.Logf("restarted the sandbox's %s: pid %d", p.name, cmd.Process.Pid)
		}
		eventually(ctx, t, "the sandbox's delegator leads again", func(context.Context) (bool, string, error) {
			return leads(c.DelegatorHealth + "/metrics"), "", nil
		})
		eventually(ctx, t, "the sandbox's scheduler leads again", func(context.Context) (bool, string, error) {
			return leads(schedulerHealthURL(t, procs[len(procs)-1].args) + "/metrics"), "", nil
		})
	})
}

// withFlags returns args with the values of the given --flag=value or
// --flag value arguments replaced.
func withFlags(args []string, values map[string]string) []string {
	out := append([]string(nil), args...)
	for i := 0; i < len(out); i++ {
		name, _, hasValue := strings.Cut(out[i], "=")
		v, ok := values[name]
		if !ok {
			continue
		}
		if hasValue {
			out[i] = name + "=" + v
		} else if i+1 < len(out) {
			out[i+1] = v
			i++
		}
	}
	return out
}

// schedulerHealthURL is where a scheduler with these arguments serves.
func schedulerHealthURL(t *testing.T, args []string) string {
	t.Helper()
	for _, a := range args {
		if p, ok := strings.CutPrefix(a, "--secure-port="); ok {
			return "https://127.0.0.1:" + p
		}
	}
	t.Fatalf("no --secure-port= in %v", args)
	return ""
}
