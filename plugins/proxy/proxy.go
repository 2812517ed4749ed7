// Package proxy is the scheduler plugin of the admiralty-proxy profile: it
// places proxy pods on the virtual nodes that stand for target clusters.
package proxy

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fwk "k8s.io/kube-scheduler/framework"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// Name is the plugin's name in KubeSchedulerConfiguration profiles.
const Name = "AdmiraltyProxy"

// ErrReasonNotVirtual is the reason given for a node that stands for no
// target cluster.
const ErrReasonNotVirtual = "node is not an Admiralty virtual node"

// Plugin places proxy pods.
type Plugin struct{}

var _ fwk.FilterPlugin = &Plugin{}

// New is the plugin factory registered with the scheduler command.
func New(_ context.Context, _ runtime.Object, _ fwk.Handle) (fwk.Plugin, error) {
	return &Plugin{}, nil
}

// Name returns the plugin name.
func (*Plugin) Name() string { return Name }

// Filter keeps only virtual nodes: a proxy pod runs nothing itself, its
// delegate runs in the cluster that the virtual node stands for.
func (*Plugin) Filter(_ context.Context, _ fwk.CycleState, _ *v1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	if !IsVirtualNode(nodeInfo.Node()) {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, ErrReasonNotVirtual)
	}
	return nil
}

// IsVirtualNode tells whether node is one of Admiralty's virtual nodes.
func IsVirtualNode(node *v1.Node) bool {
	return node != nil && node.Labels[v1alpha1.LabelVirtualKubeletProvider] == v1alpha1.ProviderName
}
