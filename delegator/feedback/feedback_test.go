package feedback

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

func TestStatusTakesTheDelegatesButKeepsTheProxysScheduling(t *testing.T) {
	proxy := &corev1.Pod{Status: corev1.PodStatus{
		Phase:    corev1.PodPending,
		QOSClass: corev1.PodQOSBurstable,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, Reason: "bound to virtual node"},
		},
	}}
	ch := &v1alpha1.PodChaperon{Status: v1alpha1.PodChaperonStatus{NodeName: "cluster2-node-0", PodStatus: corev1.PodStatus{
		Phase:    corev1.PodRunning,
		PodIP:    "10.2.0.5",
		QOSClass: corev1.PodQOSBestEffort,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, Reason: "target node"},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "nginx", Ready: true}},
	}}}
	want := corev1.PodStatus{
		Phase:    corev1.PodRunning,
		PodIP:    "10.2.0.5",
		QOSClass: corev1.PodQOSBurstable,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, Reason: "bound to virtual node"},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "nginx", Ready: true}},
	}
	if diff := cmp.Diff(want, Status(proxy, ch)); diff != "" {
		t.Errorf("Status() (-want +got):\n%s", diff)
	}
}

func TestStatusOfAChaperonWithoutStatusIsPending(t *testing.T) {
	if got := Status(&corev1.Pod{}, &v1alpha1.PodChaperon{}).Phase; got != corev1.PodPending {
		t.Errorf("phase = %q, want Pending", got)
	}
}

func TestAwaitsKubelet(t *testing.T) {
	zero, thirty := int64(0), int64(30)
	now := metav1.Now()
	for _, tc := range []struct {
		name  string
		grace *int64
		want  bool
	}{
		{"graceful deletion: the final delete is the node's", &thirty, true},
		{"grace period 0: the API server removes it itself", &zero, false},
		{"no grace period recorded", nil, true},
	} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now, DeletionGracePeriodSeconds: tc.grace}}
		if got := awaitsKubelet(pod); got != tc.want {
			t.Errorf("%s: awaitsKubelet = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDeletedProxiesAreRememberedForAWhile(t *testing.T) {
	c := &Controller{deleted: map[types.UID]time.Time{}}
	pod := func(uid string) *corev1.Pod { return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}} }
	if c.sawDeleted("a") {
		t.Fatal("a proxy never deleted is remembered as deleted")
	}
	c.proxyDeleted(pod("a"))
	c.proxyDeleted(cache.DeletedFinalStateUnknown{Key: "ns/b", Obj: pod("b")})
	c.proxyDeleted("not a pod")
	if !c.sawDeleted("a") || !c.sawDeleted("b") {
		t.Fatalf("deleted proxies a (event) and b (tombstone) not remembered: %v", c.deleted)
	}
	c.deleted["a"] = time.Now().Add(-deletedMemory - time.Second)
	c.proxyDeleted(pod("c"))
	if c.sawDeleted("a") || !c.sawDeleted("b") || !c.sawDeleted("c") {
		t.Errorf("after deletedMemory, a should be forgotten, b and c kept: %v", c.deleted)
	}
}
