// Command admiralty-delegator is the sidecar of kube-scheduler-admiralty.
package main

import (
	"os"

	"k8s.io/component-base/cli"

	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/delegator/chaperon"
	"admiralty.io/multicluster-scheduler/delegator/clustersummary"
	"admiralty.io/multicluster-scheduler/delegator/failover"
	"admiralty.io/multicluster-scheduler/delegator/feedback"
	"admiralty.io/multicluster-scheduler/delegator/follow"
	"admiralty.io/multicluster-scheduler/delegator/kubelet"
	"admiralty.io/multicluster-scheduler/delegator/service"
	"admiralty.io/multicluster-scheduler/delegator/source"
	"admiralty.io/multicluster-scheduler/delegator/stats"
	"admiralty.io/multicluster-scheduler/delegator/virtualnode"
	"admiralty.io/multicluster-scheduler/delegator/webhook"
)

func main() {
	// Servers run on every replica; controllers on the leader only.
	servers := []app.ServerFactory{webhook.NewServer}
	os.Exit(cli.Run(app.NewCommandWithServers(servers,
		webhook.NewManager,
		virtualnode.NewController,
		// The virtual nodes' kubelet endpoint: on the leader, whose address
		// the virtual nodes advertise.
		kubelet.NewServer,
		feedback.NewController,
		failover.NewController,
		source.NewController,
		// Each namespace's Role of the delegates that Sources may read.
		source.NewDelegatesController,
		// The chaperon controller holds delegates back until the follow
		// controller of their source copied their config maps and secrets.
		chaperon.NewController,
		follow.NewSourceController,
		service.NewController,
		clustersummary.NewController,
		// Metrics of the targets and delegates, read at scrape time.
		stats.NewController,
	)))
}
