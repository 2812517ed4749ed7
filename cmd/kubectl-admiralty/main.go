// Command kubectl-admiralty is the kubectl plugin `kubectl admiralty`.
package main

import (
	"os"

	"admiralty.io/multicluster-scheduler/kubectladmiralty"
)

func main() {
	if err := kubectladmiralty.NewCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
