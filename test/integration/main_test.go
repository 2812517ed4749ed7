// Package integration tests the project against the real API servers of a
// local sandbox (hack/sandbox.sh): kwokctl clusters whose scheduler is
// kube-scheduler-admiralty and beside which admiralty-delegator runs.
//
// Run it with `make test`, which starts a sandbox of its own (own names,
// ports and directory, so a `make demo` sandbox is never touched), points
// ADMIRALTY_SANDBOX at its description and removes it afterwards.
package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Cluster is one sandbox cluster, as hack/sandbox.sh describes it.
type Cluster struct {
	Context             string `json:"context"`
	KwokName            string `json:"kwokName"`
	Region              string `json:"region"`
	Dir                 string `json:"dir"`
	KwokWorkdir         string `json:"kwokWorkdir"`
	APIServer           string `json:"apiServer"`
	DelegatorHealth     string `json:"delegatorHealth"`
	WebhookPort         int    `json:"webhookPort"`
	KubeletPort         int    `json:"kubeletPort"`
	AdminKubeconfig     string `json:"adminKubeconfig"`
	DelegatorKubeconfig string `json:"delegatorKubeconfig"`
	DelegatorPidFile    string `json:"delegatorPidFile"`

	Config *rest.Config         `json:"-"`
	Client kubernetes.Interface `json:"-"`
}

// Sandbox is the set of clusters under test.
type Sandbox struct {
	Kubeconfig string     `json:"kubeconfig"`
	Bin        string     `json:"bin"`
	Clusters   []*Cluster `json:"clusters"`
}

var sandbox *Sandbox

func TestMain(m *testing.M) {
	s, err := loadSandbox(os.Getenv("ADMIRALTY_SANDBOX"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration tests need a sandbox: %v\nRun them with `make test` (or hack/test-integration.sh).\n", err)
		os.Exit(1)
	}
	sandbox = s
	os.Exit(m.Run())
}

func loadSandbox(path string) (*Sandbox, error) {
	if path == "" {
		return nil, fmt.Errorf("ADMIRALTY_SANDBOX is not set")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := &Sandbox{}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(s.Clusters) < 3 {
		return nil, fmt.Errorf("%s: %d clusters, the tests need 3", path, len(s.Clusters))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range s.Clusters {
		c.Config, err = clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Context, err)
		}
		c.Config.QPS, c.Config.Burst = 200, 400
		c.Client, err = kubernetes.NewForConfig(c.Config)
		if err != nil {
			return nil, err
		}
		if _, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
			return nil, fmt.Errorf("%s (%s) is not ready: %w", c.Context, c.APIServer, err)
		}
	}
	return s, nil
}
