package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
)

// cluster is one sandbox cluster as `hack/sandbox.sh describe` prints it,
// with the harness's clients.
type cluster struct {
	Context          string `json:"context"`
	KwokWorkdir      string `json:"kwokWorkdir"`
	AdminKubeconfig  string `json:"adminKubeconfig"`
	DelegatorPidFile string `json:"delegatorPidFile"`

	kube kubernetes.Interface
	mc   versioned.Interface
	// admin is the admin kubeconfig's client configuration (kwok's admin
	// certificate), which the scheduler's own endpoints also accept.
	admin *rest.Config
}

type sandbox struct {
	Kubeconfig string     `json:"kubeconfig"`
	Bin        string     `json:"bin"`
	Clusters   []*cluster `json:"clusters"`
}

// loadSandbox reads the sandbox description and connects to every cluster.
// The harness's own clients are not rate limited: it must never be what
// limits the pods' creation.
func loadSandbox(ctx context.Context, path string) (*sandbox, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sandbox description: %w (run `make sandbox` or `make demo` first)", err)
	}
	s := &sandbox{}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, c := range s.Clusters {
		cfg, err := clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Context, err)
		}
		cfg.QPS, cfg.Burst = -1, 0
		cfg.UserAgent = "admiralty-bench"
		c.admin = rest.CopyConfig(cfg)
		mcCfg := rest.CopyConfig(cfg)
		cfg.ContentType = "application/vnd.kubernetes.protobuf"
		cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
		if c.kube, err = kubernetes.NewForConfig(cfg); err != nil {
			return nil, err
		}
		if c.mc, err = versioned.NewForConfig(mcCfg); err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = c.kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s is not ready: %w (is the sandbox up? hack/sandbox.sh status)", c.Context, err)
		}
	}
	return s, nil
}

// Processes whose CPU and memory the benchmark reports, per cluster.
const (
	procScheduler = "scheduler"
	procDelegator = "delegator"
	procAPIServer = "kube-apiserver"
)

func (c *cluster) pidFile(proc string) string {
	switch proc {
	case procDelegator:
		return c.DelegatorPidFile
	case procScheduler:
		return filepath.Join(c.KwokWorkdir, "pids", "kube-scheduler.pid")
	default:
		return filepath.Join(c.KwokWorkdir, "pids", proc+".pid")
	}
}

func (c *cluster) pid(proc string) (int, error) {
	data, err := os.ReadFile(c.pidFile(proc))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// checkAlive fails when a process of the cluster is not running: kwokctl
// does not restart its components (a kube-controller-manager that lost its
// lease on an overloaded machine exits), and a scenario would then hang.
func (c *cluster) checkAlive() error {
	files, _ := filepath.Glob(filepath.Join(c.KwokWorkdir, "pids", "*.pid"))
	files = append(files, c.DelegatorPidFile)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Context, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			return fmt.Errorf("%s: %s: %w", c.Context, f, err)
		}
		if err := syscall.Kill(pid, 0); err != nil {
			return fmt.Errorf("%s: %s (pid %d) is not running: restart the sandbox (hack/sandbox.sh down, then up)",
				c.Context, strings.TrimSuffix(filepath.Base(f), ".pid"), pid)
		}
	}
	return nil
}

// schedulerPort reads the scheduler's --secure-port from its command line.
func (c *cluster) schedulerPort() (string, error) {
	pid, err := c.pid(procScheduler)
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "", err
	}
	for _, a := range strings.Split(string(data), "\x00") {
		if p, ok := strings.CutPrefix(a, "--secure-port="); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: the scheduler has no --secure-port", c.Context)
}
