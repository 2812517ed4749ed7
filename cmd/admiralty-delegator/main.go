// Command admiralty-delegator is the sidecar of kube-scheduler-admiralty.
package main

import (
	"os"

	"k8s.io/component-base/cli"

	"admiralty.io/multicluster-scheduler/delegator/app"
)

func main() {
	os.Exit(cli.Run(app.NewCommand()))
}
