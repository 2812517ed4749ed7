package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	"admiralty.io/multicluster-scheduler/plugins/candidate"
	"admiralty.io/multicluster-scheduler/plugins/proxy"
)

// The shipped configuration must build with the plugins this binary
// registers: an unknown plugin name or a bad profile fails here, not in a
// cluster.
func TestShippedConfigBuildsAllProfiles(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	// Never contacted: Setup builds clients and frameworks without calling
	// the API server.
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile("../../config/scheduler-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// kwokctl and the Helm chart set clientConnection.kubeconfig the same way.
	config := filepath.Join(dir, "scheduler-config.yaml")
	withKubeconfig := strings.Replace(string(shipped), "clientConnection:\n", "clientConnection:\n  kubeconfig: "+kubeconfig+"\n", 1)
	if err := os.WriteFile(config, []byte(withKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := options.NewOptions()
	opts.ConfigFile = config
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, sched, err := app.Setup(ctx, opts,
		app.WithPlugin(proxy.Name, proxy.New),
		app.WithPlugin(candidate.Name, candidate.New),
	)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	var names []string
	for name := range sched.Profiles {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{"admiralty-candidate", "admiralty-proxy", "default-scheduler"}
	if !slices.Equal(names, want) {
		t.Errorf("profiles = %v, want %v", names, want)
	}
	if !sched.Profiles["admiralty-proxy"].HasFilterPlugins() {
		t.Error("admiralty-proxy has no filter plugins")
	}
}
