// Package kubectladmiralty is the kubectl plugin `kubectl admiralty`
// (binary kubectl-admiralty on the PATH): the commands that connect
// clusters, so that installing the project needs no separate export tool.
package kubectladmiralty

import (
	"os"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeFlags select the cluster and namespace, as kubectl's own flags do.
type kubeFlags struct {
	kubeconfig string
	context    string
	namespace  string
}

func (f *kubeFlags) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: f.context}
	overrides.Context.Namespace = f.namespace
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// NewCommand returns the root command of the plugin.
func NewCommand() *cobra.Command {
	f := &kubeFlags{}
	cmd := &cobra.Command{
		Use:   "kubectl-admiralty",
		Short: "Connect clusters for kube-scheduler-admiralty",
		Long: `kubectl admiralty connects clusters for kube-scheduler-admiralty.

In a target cluster, a Source (or ClusterSource) makes an identity for a
source cluster; "kubectl admiralty export" turns that identity into the
kubeconfig Secret that the source cluster's Target refers to. In a source
cluster, "kubectl admiralty status" shows the targets and "kubectl admiralty
describe pod" a proxy beside its PodChaperon and delegate.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl admiralty"},
		SilenceUsage:  true,
		SilenceErrors: false,
		PersistentPreRun: func(*cobra.Command, []string) {
			// A target's legacy token draws the same API warning on every
			// request: say it once.
			rest.SetDefaultWarningHandler(rest.NewWarningWriter(os.Stderr, rest.WarningWriterOptions{Deduplicate: true}))
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	pf.StringVar(&f.context, "context", "", "kubeconfig context of the cluster to use (default: the current context)")
	pf.StringVarP(&f.namespace, "namespace", "n", "", "namespace (default: the context's namespace, or default)")
	cmd.AddCommand(newExportCommand(f), newStatusCommand(f), newDescribeCommand(f))
	return cmd
}
