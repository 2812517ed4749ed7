package feedback

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

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
	ch := &v1alpha1.PodChaperon{Status: corev1.PodStatus{
		Phase:    corev1.PodRunning,
		PodIP:    "10.2.0.5",
		QOSClass: corev1.PodQOSBestEffort,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, Reason: "target node"},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "nginx", Ready: true}},
	}}
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
