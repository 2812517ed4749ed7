// Command kube-scheduler-admiralty is the upstream kube-scheduler with
// Admiralty's plugins registered. Run it with config/scheduler-config.yaml
// (profiles default-scheduler, admiralty-proxy and admiralty-candidate).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as in upstream
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"admiralty.io/multicluster-scheduler/plugins/candidate"
	"admiralty.io/multicluster-scheduler/plugins/proxy"
)

func main() {
	cmd := app.NewSchedulerCommand(
		app.WithPlugin(proxy.Name, proxy.New),
		app.WithPlugin(candidate.Name, candidate.New),
	)
	os.Exit(cli.Run(cmd))
}
