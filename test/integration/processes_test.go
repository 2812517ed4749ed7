package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// Sandbox components as processes: the tests of outages and crashes stop,
// kill and restart them by pid, from the pid files hack/sandbox.sh and
// kwokctl write, and restart them with the command line they had, the way
// hack/sandbox.sh restarts a scheduler.

// component is one process of the sandbox, found by its pid file.
type component struct {
	name      string
	scheduler bool
	pidFile   string
	logFile   string
	health    string
}

func delegatorComponent(c *Cluster) component {
	return component{name: c.Context + " delegator", pidFile: c.DelegatorPidFile, logFile: filepath.Join(c.Dir, "delegator.log"),
		health: c.DelegatorHealth + "/healthz"}
}

func schedulerComponent(c *Cluster) component {
	return component{
		name:      c.Context + " scheduler",
		scheduler: true,
		pidFile:   filepath.Join(c.KwokWorkdir, "pids", "kube-scheduler.pid"),
		logFile:   filepath.Join(c.KwokWorkdir, "logs", "kube-scheduler.log"),
	}
}

// flags of a command line, --name=value or --name value.
func flagsOf(args []string) map[string]string {
	out := map[string]string{}
	for i := 1; i < len(args); i++ {
		name, ok := strings.CutPrefix(args[i], "--")
		if !ok {
			continue
		}
		if n, v, ok := strings.Cut(name, "="); ok {
			out[n] = v
		} else if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			out[name] = args[i+1]
			i++
		} else {
			out[name] = "true"
		}
	}
	return out
}

// lease returns the namespace and name of the running process's leader
// Lease, from its flags (and the scheduler's configuration file); an empty
// name if it runs without leader election.
func (p component) lease(t *testing.T) (string, string) {
	t.Helper()
	flags := flagsOf(p.cmdline(t))
	ns, name, elect := "admiralty", "admiralty-delegator", "true"
	if v := flags["namespace"]; v != "" {
		ns = v
	}
	if p.scheduler {
		ns, name = "kube-system", "kube-scheduler"
		if path := flags["config"]; path != "" {
			var cfg struct {
				LeaderElection struct {
					LeaderElect       *bool  `json:"leaderElect"`
					ResourceName      string `json:"resourceName"`
					ResourceNamespace string `json:"resourceNamespace"`
				} `json:"leaderElection"`
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(data, &cfg); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			le := cfg.LeaderElection
			if le.LeaderElect != nil && !*le.LeaderElect {
				elect = "false"
			}
			if le.ResourceName != "" {
				name = le.ResourceName
			}
			if le.ResourceNamespace != "" {
				ns = le.ResourceNamespace
			}
		}
	}
	if v := flags["leader-elect"]; v != "" {
		elect = v
	}
	if v := flags["leader-elect-resource-name"]; v != "" {
		name = v
	}
	if v := flags["leader-elect-resource-namespace"]; v != "" {
		ns = v
	}
	if elect == "false" {
		return "", ""
	}
	return ns, name
}

func (p component) pid() int {
	data, err := os.ReadFile(p.pidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

func (p component) alive() bool {
	pid := p.pid()
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

// cmdline of the running process.
func (p component) cmdline(t *testing.T) []string {
	t.Helper()
	pid := p.pid()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatalf("%s: pid %d: %v", p.name, pid, err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

// kill sends SIGKILL and waits for the process to be gone.
func (p component) kill(t *testing.T) {
	t.Helper()
	pid := p.pid()
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
}

// start runs args in a session of its own (it outlives the test, as the
// sandbox's processes do), appending to the component's log, and writes
// its pid file.
func (p component) start(t *testing.T, args []string) {
	t.Helper()
	out, err := os.OpenFile(p.logFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	if err := os.WriteFile(p.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Reap it if it exits while the test runs; it is not waited for.
	go func() { _ = cmd.Wait() }()
}

// waitHealthy polls a health URL.
func waitHealthy(ctx context.Context, t *testing.T, what, url string) {
	t.Helper()
	eventually(ctx, t, what+" healthy", func(ctx context.Context) (bool, string, error) {
		resp, err := insecureClient.Get(url)
		if err != nil {
			return false, err.Error(), nil
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status, nil
	})
}

// insecureClient reaches the sandbox's local components, whose serving
// certificates are self-signed.
var insecureClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // #nosec: local sandbox components

// kwokctl runs kwokctl on the sandbox's kwok working directory.
func kwokctl(ctx context.Context, c *Cluster, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(sandbox.Bin, "kwokctl"), args...)
	cmd.Env = append(os.Environ(),
		"KWOK_WORKDIR="+filepath.Dir(filepath.Dir(c.KwokWorkdir)),
		"KWOK_KUBECTL_BINARY="+filepath.Join(sandbox.Bin, "kubectl"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kwokctl %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return nil
}

func apiReady(ctx context.Context, c *Cluster) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err == nil
}

// stopCluster stops every process of cluster c (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok) with kwokctl. Its
// delegator, which loses its leader Lease, exits or is killed. The returned
// function starts them all again and waits for them; it also runs when the
// test ends, whatever the outcome, so the sandbox is left whole.
func stopCluster(t *testing.T, c *Cluster) (restore func()) {
	t.Helper()
	restore = restorer(t, c, func(ctx context.Context) {
		if !apiReady(ctx, c) {
			if err := kwokctl(ctx, c, "start", "cluster", "--name", c.KwokName, "--wait", "90s"); err != nil {
				t.Errorf("restoring %s: %v", c.Context, err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kwokctl(ctx, c, "stop", "cluster", "--name", c.KwokName); err != nil {
		t.Fatal(err)
	}
	// Its delegator would exit on its own once its Lease cannot be renewed;
	// kill it now, so that it is restarted below with a fresh state.
	delegatorComponent(c).kill(t)
	return restore
}

// restorer returns the restore function of an outage of cluster c, also
// run when the test ends: once, resume brings the cluster back, then the
// API server is waited for and c's delegator started again (with the
// command line it has now) if it is gone.
func restorer(t *testing.T, c *Cluster, resume func(ctx context.Context)) func() {
	t.Helper()
	delegator := delegatorComponent(c)
	args := delegator.cmdline(t)
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		resume(ctx)
		eventually(ctx, t, c.Context+" API server back", func(ctx context.Context) (bool, string, error) {
			return apiReady(ctx, c), "", nil
		})
		if !delegator.alive() {
			delegator.start(t, args)
		}
		waitHealthy(ctx, t, c.Context+" delegator", c.DelegatorHealth+"/healthz")
	}
	t.Cleanup(restore)
	return restore
}

// freezeCluster stops cluster c's kube-apiserver with SIGSTOP: the kernel
// still accepts connections to its port, but no request is answered, as
// when a network drops packets. The returned function (also run when the
// test ends) resumes it and restarts whatever of the cluster gave up
// meanwhile (components whose leader election lapsed exit).
func freezeCluster(t *testing.T, c *Cluster) (restore func()) {
	t.Helper()
	apiserver := component{name: c.Context + " kube-apiserver", pidFile: filepath.Join(c.KwokWorkdir, "pids", "kube-apiserver.pid")}
	pid := apiserver.pid()
	if pid <= 0 {
		t.Fatalf("%s: no pid", apiserver.name)
	}
	restore = restorer(t, c, func(ctx context.Context) {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Errorf("resuming %s: %v", apiserver.name, err)
		}
		eventually(ctx, t, c.Context+" API server resumed", func(ctx context.Context) (bool, string, error) {
			return apiReady(ctx, c), "", nil
		})
		for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kwok-controller"} {
			p := component{name: c.Context + " " + name, pidFile: filepath.Join(c.KwokWorkdir, "pids", name+".pid")}
			if _, err := os.Stat(p.pidFile); err == nil && !p.alive() {
				t.Logf("%s exited while the API server was frozen: restarting the cluster's processes", p.name)
				if err := kwokctl(ctx, c, "stop", "cluster", "--name", c.KwokName); err != nil {
					t.Errorf("restoring %s: %v", c.Context, err)
				}
				if err := kwokctl(ctx, c, "start", "cluster", "--name", c.KwokName, "--wait", "90s"); err != nil {
					t.Errorf("restoring %s: %v", c.Context, err)
				}
				break
			}
		}
	})
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("freezing %s: %v", apiserver.name, err)
	}
	return restore
}
