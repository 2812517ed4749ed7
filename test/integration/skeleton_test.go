package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"admiralty.io/multicluster-scheduler/proxypod"
)

// kube-scheduler-admiralty is really each cluster's scheduler: the process
// kwokctl runs as kube-scheduler is our binary, it binds ordinary pods
// through the default-scheduler profile, and its admiralty-proxy profile
// runs our plugin (whose reject reason no upstream plugin gives).
func TestEachClusterIsScheduledByKubeSchedulerAdmiralty(t *testing.T) {
	want, err := filepath.EvalSymlinks(filepath.Join(sandbox.Bin, "kube-scheduler-admiralty"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range sandbox.Clusters {
		t.Run(c.Context, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t, 2*time.Minute)

			pidText, err := os.ReadFile(filepath.Join(c.KwokWorkdir, "pids", "kube-scheduler.pid"))
			if err != nil {
				t.Fatalf("kwokctl's scheduler pid file: %v", err)
			}
			exe, err := os.Readlink(fmt.Sprintf("/proc/%s/exe", strings.TrimSpace(string(pidText))))
			if err != nil {
				t.Fatalf("the scheduler process is not running: %v", err)
			}
			if exe != want {
				t.Fatalf("the cluster's scheduler runs %s, want %s", exe, want)
			}

			ns := namespace(t, c, "skeleton", nil)
			plain := pod(ns, "plain", "default-scheduler")
			if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, plain, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(ctx, t, "the default-scheduler profile binds the pod and kwok runs it", func(ctx context.Context) (bool, string, error) {
				p, err := c.Client.CoreV1().Pods(ns).Get(ctx, plain.Name, metav1.GetOptions{})
				if err != nil {
					return false, "", err
				}
				events, err := podEvents(ctx, c, p)
				if err != nil {
					return false, "", err
				}
				scheduled := false
				for _, e := range events {
					if e.Reason == "Scheduled" && (e.Source.Component == "default-scheduler" || e.ReportingController == "default-scheduler") {
						scheduled = true
					}
				}
				msg := fmt.Sprintf("node %q, phase %s, events: %s", p.Spec.NodeName, p.Status.Phase, summarizeEvents(events))
				return scheduled && strings.HasPrefix(p.Spec.NodeName, c.Context+"-node-") && p.Status.Phase == corev1.PodRunning, msg, nil
			})

			proxied := pod(ns, "proxied", "admiralty-proxy")
			if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, proxied, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(ctx, t, "the admiralty-proxy profile runs the AdmiraltyProxy plugin", func(ctx context.Context) (bool, string, error) {
				events, err := podEvents(ctx, c, proxied)
				if err != nil {
					return false, "", err
				}
				for _, e := range events {
					// An unlabeled namespace: no webhook made this pod a proxy, and
					// AdmiraltyProxy says so (no upstream plugin would).
					if e.Reason == "FailedScheduling" && strings.Contains(e.Message, proxypod.ErrNotProxy.Error()) {
						return true, "", nil
					}
				}
				return false, summarizeEvents(events), nil
			})
		})
	}
}

func pod(ns, name, schedulerName string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			SchedulerName: schedulerName,
			Containers: []corev1.Container{{
				Name:  "main",
				Image: "nginx",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: mustParse("100m"), corev1.ResourceMemory: mustParse("32Mi"),
				}},
			}},
		},
	}
}

// Every cluster's delegator is up, healthy and leading.
func TestDelegatorIsHealthyAndLeads(t *testing.T) {
	for _, c := range sandbox.Clusters {
		t.Run(c.Context, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t, time.Minute)
			for _, path := range []string{"/healthz", "/livez", "/readyz"} {
				code, body := get(t, c.DelegatorHealth+path)
				if code != http.StatusOK || strings.TrimSpace(body) != "ok" {
					t.Errorf("GET %s = %d %q, want 200 ok", path, code, body)
				}
			}
			eventually(ctx, t, "the delegator reports itself as leader", func(context.Context) (bool, string, error) {
				_, metrics := get(t, c.DelegatorHealth+"/metrics")
				line := metricLine(metrics, `leader_election_master_status{name="admiralty-delegator"}`)
				return strings.HasSuffix(line, " 1"), line, nil
			})
			lease, err := c.Client.CoordinationV1().Leases("admiralty").Get(ctx, "admiralty-delegator", metav1.GetOptions{})
			if err != nil {
				t.Fatalf("leader lease: %v", err)
			}
			if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
				t.Errorf("lease %s has no holder", lease.Name)
			}
			if lease.Spec.RenewTime == nil || time.Since(lease.Spec.RenewTime.Time) > time.Minute {
				t.Errorf("lease %s was not renewed lately: %v", lease.Name, lease.Spec.RenewTime)
			}
		})
	}
}

// Two delegators compete for one lease: exactly one leads; SIGTERM makes the
// leader release the lease and exit cleanly, and the standby takes over
// without waiting for the lease to expire.
func TestDelegatorLeaderElectionAndGracefulShutdown(t *testing.T) {
	c := sandbox.Clusters[0]
	ctx := testContext(t, 2*time.Minute)
	lease := "test-election-" + rand.String(5)
	t.Cleanup(func() {
		_ = c.Client.CoordinationV1().Leases("admiralty").Delete(context.Background(), lease, metav1.DeleteOptions{})
	})
	a := startDelegator(t, c, "--leader-elect-resource-name", lease, "--leader-elect-lease-duration", "60s", "--leader-elect-renew-deadline", "10s")
	eventually(ctx, t, "the first delegator leads", func(context.Context) (bool, string, error) {
		return a.leads(t), "", nil
	})
	b := startDelegator(t, c, "--leader-elect-resource-name", lease, "--leader-elect-lease-duration", "60s", "--leader-elect-renew-deadline", "10s")
	eventually(ctx, t, "the second delegator is up", func(context.Context) (bool, string, error) {
		code, _ := getNoFail(b.health + "/healthz")
		return code == http.StatusOK, "", nil
	})
	if b.leads(t) {
		t.Fatal("two delegators lead at once")
	}

	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-a.exited; err != nil {
		t.Errorf("the leader did not exit cleanly on SIGTERM: %v\n%s", err, a.logs())
	}
	// The lease lasts 60 s: a standby that leads before that proves that the
	// leader released it on the way out.
	eventually(testContext(t, 30*time.Second), t, "the standby takes over the released lease", func(context.Context) (bool, string, error) {
		return b.leads(t), "", nil
	})
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-b.exited; err != nil {
		t.Errorf("the second delegator did not exit cleanly: %v\n%s", err, b.logs())
	}
	l, err := c.Client.CoordinationV1().Leases("admiralty").Get(ctx, lease, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
		t.Errorf("lease still held by %q after both delegators stopped", *l.Spec.HolderIdentity)
	}
}

type delegatorProcess struct {
	cmd     *exec.Cmd
	health  string
	logFile string
	exited  chan error
}

// startDelegator runs an extra admiralty-delegator against cluster c, with
// the sandbox delegator's identity; the test kills it by pid if it is still
// running at the end.
func startDelegator(t *testing.T, c *Cluster, args ...string) *delegatorProcess {
	t.Helper()
	port := freePort(t)
	logFile := filepath.Join(t.TempDir(), "delegator.log")
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(sandbox.Bin, "admiralty-delegator"), append([]string{
		"--kubeconfig", c.DelegatorKubeconfig,
		"--cluster-name", c.Context,
		"--health-addr", "127.0.0.1:" + strconv.Itoa(port),
		// Its own webhook port; and the sandbox delegator's webhook URL, so
		// that if it leads it applies the same webhook configuration.
		"--webhook-addr", "127.0.0.1:" + strconv.Itoa(freePort(t)),
		"--webhook-url", fmt.Sprintf("https://127.0.0.1:%d/mutate-pods", c.WebhookPort),
		// Its own kubelet endpoint: the default :10250 may be taken, and a
		// leader that cannot listen there stops.
		"--kubelet-addr", "127.0.0.1:" + strconv.Itoa(freePort(t)),
		"--leader-elect-retry-period", "500ms",
		"--log-format", "console",
	}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &delegatorProcess{cmd: cmd, health: fmt.Sprintf("http://127.0.0.1:%d", port), logFile: logFile, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait(); out.Close() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	return p
}

func (p *delegatorProcess) leads(t *testing.T) bool {
	_, metrics := getNoFail(p.health + "/metrics")
	return strings.HasSuffix(metricLine(metrics, `leader_election_master_status{name="`), " 1")
}

func (p *delegatorProcess) logs() string {
	data, _ := os.ReadFile(p.logFile)
	return string(data)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	code, body := getNoFail(url)
	if code == 0 {
		t.Fatalf("GET %s: %s", url, body)
	}
	return code, body
}

func getNoFail(url string) (int, string) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metricLine returns the first sample line of a Prometheus text exposition
// that starts with prefix.
func metricLine(metrics, prefix string) string {
	s := bufio.NewScanner(strings.NewReader(metrics))
	for s.Scan() {
		if strings.HasPrefix(s.Text(), prefix) {
			return s.Text()
		}
	}
	return ""
}
