package proxy

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/backend/queue"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/metrics"
	clocktesting "k8s.io/utils/clock/testing"
)

// What Unreserve relies on, in the upstream scheduling queue: a proxy
// activated while its binding cycle runs, then rejected by this plugin at
// Permit, goes back through its backoff, not at once; activated once it
// waits aside (a refusal that ended), it goes to the active queue.
func TestActivationInFlightKeepsTheBackoff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := klog.Background()
	metrics.Register()
	clock := clocktesting.NewFakeClock(time.Now())
	q := queue.NewTestQueue(ctx, func(a, b fwk.QueuedEntityInfo) bool { return false },
		queue.WithClock(clock), queue.WithPodInitialBackoffDuration(time.Second), queue.WithPodMaxBackoffDuration(10*time.Second))
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "p-uid"}, Spec: v1.PodSpec{SchedulerName: v1.DefaultSchedulerName}}
	q.Add(ctx, pod)
	in := func(pods []*v1.Pod) bool { return len(pods) == 1 && pods[0].UID == pod.UID }

	popped, err := q.Pop(logger)
	if err != nil {
		t.Fatal(err)
	}
	pInfo := popped.(*framework.QueuedPodInfo)
	// Unreserve, during the binding cycle.
	q.Activate(logger, map[string]*v1.Pod{"ns/p": pod})
	pInfo.UnschedulablePlugins = sets.New(Name)
	if err := q.AddUnschedulablePodIfNotPresent(logger, pInfo, q.SchedulingCycle()); err != nil {
		t.Fatal(err)
	}
	if !in(q.PodsInBackoffQ()) || len(q.PodsInActiveQ()) != 0 {
		t.Fatalf("activated in flight: backoff %v, active %v; want the backoff queue", q.PodsInBackoffQ(), q.PodsInActiveQ())
	}

	// Without the activation, a rejected pod waits aside; activated
	// there, it goes to the active queue.
	pod = &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "q", UID: "q-uid"}, Spec: pod.Spec}
	q.Add(ctx, pod)
	if popped, err = q.Pop(logger); err != nil {
		t.Fatal(err)
	}
	pInfo = popped.(*framework.QueuedPodInfo)
	pInfo.UnschedulablePlugins = sets.New(Name)
	if err := q.AddUnschedulablePodIfNotPresent(logger, pInfo, q.SchedulingCycle()); err != nil {
		t.Fatal(err)
	}
	if !in(q.UnschedulablePods()) {
		t.Fatalf("unschedulable %v, want the pod", q.UnschedulablePods())
	}
	q.Activate(logger, map[string]*v1.Pod{"ns/q": pod})
	if !in(q.PodsInActiveQ()) {
		t.Fatalf("active %v, want the pod", q.PodsInActiveQ())
	}
}
