// Command kube-scheduler-admiralty is the upstream kube-scheduler with
// Admiralty's plugins registered, and the project's zap logger as the json
// and console --logging-format. Run it with config/scheduler-config.yaml
// (profiles default-scheduler, admiralty-proxy and admiralty-candidate).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as in upstream
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"admiralty.io/multicluster-scheduler/logging"
	"admiralty.io/multicluster-scheduler/plugins/candidate"
	"admiralty.io/multicluster-scheduler/plugins/proxy"
)

func main() {
	// --logging-format=json or console: the delegator's zap logger, with
	// klog routed to it.
	logging.RegisterFormats()
	cmd := app.NewSchedulerCommand(
		app.WithPlugin(proxy.Name, proxy.New),
		app.WithPlugin(candidate.Name, candidate.New),
	)
	os.Exit(cli.Run(cmd))
}
