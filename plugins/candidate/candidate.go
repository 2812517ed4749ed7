// Package candidate is the scheduler plugin of the admiralty-candidate
// profile: in a target cluster, it places the candidate pods that sources
// send there onto real nodes.
package candidate

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fwk "k8s.io/kube-scheduler/framework"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// Name is the plugin's name in KubeSchedulerConfiguration profiles.
const Name = "AdmiraltyCandidate"

// ErrReasonVirtual is the reason given for a virtual node.
const ErrReasonVirtual = "node is an Admiralty virtual node; candidates run on real nodes"

// Plugin places candidate pods.
type Plugin struct{}

var _ fwk.FilterPlugin = &Plugin{}

// New is the plugin factory registered with the scheduler command.
func New(_ context.Context, _ runtime.Object, _ fwk.Handle) (fwk.Plugin, error) {
	return &Plugin{}, nil
}

// Name returns the plugin name.
func (*Plugin) Name() string { return Name }

// Filter excludes virtual nodes. A cluster that targets itself (spec.self)
// has a virtual node standing for itself; a candidate placed there would
// become a proxy of a proxy and never run.
func (*Plugin) Filter(_ context.Context, _ fwk.CycleState, _ *v1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	if v1alpha1.IsVirtualNode(nodeInfo.Node()) {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, ErrReasonVirtual)
	}
	return nil
}
