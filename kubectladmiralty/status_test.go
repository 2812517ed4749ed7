package kubectladmiralty

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestAllocCap(t *testing.T) {
	n := &corev1.Node{Status: corev1.NodeStatus{
		Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("12"), corev1.ResourceMemory: resource.MustParse("48Gi"), corev1.ResourcePods: resource.MustParse("330")},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("11500m"), corev1.ResourceMemory: resource.MustParse("1500Mi"), corev1.ResourcePods: resource.MustParse("330")},
	}}
	for name, want := range map[corev1.ResourceName]string{
		corev1.ResourceCPU:    "11500m/12",
		corev1.ResourceMemory: "1500Mi/48Gi",
		corev1.ResourcePods:   "330/330",
	} {
		if got := allocCap(n, name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

func TestContainersAndConditions(t *testing.T) {
	s := corev1.PodStatus{
		Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable"}},
		ContainerStatuses: []corev1.ContainerStatus{
			{Name: "a", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			{Name: "b", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}}},
			{Name: "c", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}},
		},
	}
	if got, want := containers(s), "a=running,b=terminated (3),c=ContainerCreating"; got != want {
		t.Errorf("containers: %q, want %q", got, want)
	}
	if got, want := condition(s, corev1.PodScheduled), "False (Unschedulable)"; got != want {
		t.Errorf("PodScheduled: %q, want %q", got, want)
	}
	if got := condition(s, corev1.PodReady); got != "" {
		t.Errorf("Ready: %q, want empty", got)
	}
}
