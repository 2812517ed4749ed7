// Command admiralty-delegator is the sidecar of kube-scheduler-admiralty.
package main

import (
	"os"

	"k8s.io/component-base/cli"

	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/delegator/feedback"
	"admiralty.io/multicluster-scheduler/delegator/source"
	"admiralty.io/multicluster-scheduler/delegator/virtualnode"
)

func main() {
	os.Exit(cli.Run(app.NewCommand(
		virtualnode.NewController,
		feedback.NewController,
		source.NewController,
	)))
}
