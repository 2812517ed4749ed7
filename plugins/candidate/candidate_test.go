package candidate

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
)

func TestFilterExcludesVirtualNodes(t *testing.T) {
	cases := []struct {
		name   string
		labels map[string]string
		want   fwk.Code
	}{
		{name: "a real node fits", labels: map[string]string{"topology.kubernetes.io/region": "eu"}, want: fwk.Success},
		{name: "the cluster's own virtual node is excluded", labels: map[string]string{"virtual-kubelet.io/provider": "admiralty"}, want: fwk.UnschedulableAndUnresolvable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ni := framework.NewNodeInfo()
			ni.SetNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: tc.labels}})
			got := (&Plugin{}).Filter(context.Background(), framework.NewCycleState(), &v1.Pod{}, ni)
			if got.Code() != tc.want {
				t.Errorf("Filter() = %v, want code %v", got, tc.want)
			}
		})
	}
}
