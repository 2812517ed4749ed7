package failover

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestNotReadySince(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	node := func(conds ...corev1.NodeCondition) *corev1.Node {
		return &corev1.Node{Status: corev1.NodeStatus{Conditions: conds}}
	}
	for _, tt := range []struct {
		name  string
		node  *corev1.Node
		since time.Time
		not   bool
	}{
		{"no condition yet (registering)", node(), time.Time{}, false},
		{"ready", node(corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(at)}), time.Time{}, false},
		{"unknown since at", node(corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, LastTransitionTime: metav1.NewTime(at)}), at, true},
		{"false since at, other conditions ignored", node(
			corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionTrue},
			corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, LastTransitionTime: metav1.NewTime(at)}), at, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			since, not := NotReadySince(tt.node)
			if not != tt.not || !since.Equal(tt.since) {
				t.Errorf("NotReadySince = %v, %v; want %v, %v", since, not, tt.since, tt.not)
			}
		})
	}
}

func TestGracePeriod(t *testing.T) {
	def := 5 * time.Minute
	for _, tt := range []struct {
		spec *int64
		want time.Duration
	}{
		{nil, def},
		{ptr.To[int64](0), 0},
		{ptr.To[int64](30), 30 * time.Second},
		{ptr.To[int64](-1), def}, // refused by the CRD's validation; the flag stands
	} {
		if got := GracePeriod(tt.spec, def); got != tt.want {
			t.Errorf("GracePeriod(%v) = %s, want %s", tt.spec, got, tt.want)
		}
	}
}
