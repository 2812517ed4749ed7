package failover

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets"
)

// The bare proxies told they are kept are forgotten when they are deleted,
// or when their node is Ready again: 10,000 of them leave the map at its
// size before.
func TestKeptProxiesAreForgotten(t *testing.T) {
	ctx := context.Background()
	target := &targets.Target{Ref: targets.Ref{Namespace: "ns", Name: "c3"}, Scope: "ns"}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: target.Ref.VirtualNodeName()}}
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	if err := nodes.Add(node); err != nil {
		t.Fatal(err)
	}
	const n = 10000
	kube := kubefake.NewClientset()
	proxy := func(i int) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("p%d", i), UID: types.UID(fmt.Sprintf("u%d", i)),
				Labels: map[string]string{v1alpha1.LabelIsProxy: "true"}},
			Spec: corev1.PodSpec{NodeName: node.Name},
		}
	}
	for i := range n {
		if err := kube.Tracker().Add(proxy(i)); err != nil {
			t.Fatal(err)
		}
	}
	c := &Controller{client: kube, recorder: &record.FakeRecorder{}, nodes: corelisters.NewNodeLister(nodes),
		kept: map[string]map[types.UID]struct{}{}}
	size := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		total := 0
		for _, uids := range c.kept {
			total += len(uids) + 1
		}
		return total
	}
	before := size()

	// Deleted proxies.
	if err := c.failover(ctx, node, target, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := size(); got != before+n+1 {
		t.Fatalf("after failover: size %d, want %d (every bare proxy kept)", got, before+n+1)
	}
	for i := range n {
		if i%2 == 0 {
			c.proxyDeleted(proxy(i))
		} else {
			c.proxyDeleted(cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: proxy(i)})
		}
	}
	if got := size(); got != before {
		t.Errorf("after the proxies were deleted: size %d, want %d as before", got, before)
	}

	// The node Ready again.
	if err := c.failover(ctx, node, target, time.Minute); err != nil {
		t.Fatal(err)
	}
	ready := node.DeepCopy()
	ready.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if err := nodes.Update(ready); err != nil {
		t.Fatal(err)
	}
	if _, err := c.reconcile(ctx, node.Name); err != nil {
		t.Fatal(err)
	}
	if got := size(); got != before {
		t.Errorf("after the node is Ready: size %d, want %d as before", got, before)
	}
}
