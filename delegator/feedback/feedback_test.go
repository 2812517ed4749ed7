package feedback

import (
	"encoding/json"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

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
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	c := &Controller{clock: clk}
	if c.sawDeleted("a") {
		t.Fatal("a proxy never deleted is remembered as deleted")
	}
	c.proxyDeleted(pod("a"))
	c.proxyDeleted(cache.DeletedFinalStateUnknown{Key: "ns/b", Obj: pod("b")})
	c.proxyDeleted("not a pod")
	if !c.sawDeleted("a") || !c.sawDeleted("b") {
		t.Fatalf("deleted proxies a (event) and b (tombstone) not remembered: %v", c.deleted.at)
	}
	c.deleted.at["a"] = remembered[struct{}]{at: clk.Now().Add(-deletedMemory - time.Second)}
	if c.sawDeleted("a") || !c.sawDeleted("b") {
		t.Errorf("after deletedMemory, a should be forgotten, b kept: %v", c.deleted.at)
	}
}

// The recent maps forget a UID deletedMemory after it was put, by a timer
// set once per deletedMemory at most, and set again while some remain.
func TestRecentForgetsTheOldOnesByATimer(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := clocktesting.NewFakeClock(start)
	c := &Controller{clock: clk}
	var r recent[struct{}]
	r.put("old", start, struct{}{})
	if !r.has("old", start.Add(deletedMemory)) || r.has("old", start.Add(deletedMemory+time.Second)) {
		t.Fatal("a UID is remembered for deletedMemory exactly")
	}
	size := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.deleted.at) + len(c.deletedChaperons.at) + len(c.selfDelegates.at)
	}
	c.proxyDeleted(pod("a"))
	if clk.Waiters() != 1 {
		t.Fatalf("after a put: %d timers, want 1", clk.Waiters())
	}
	clk.Step(deletedMemory / 2)
	c.proxyDeleted(pod("b"))
	if clk.Waiters() != 1 {
		t.Fatalf("a second put while a timer is set: %d timers, want 1", clk.Waiters())
	}
	// The timer fires (synchronously, in Step): a goes, b stays, and the
	// timer is set again (from a goroutine, which this waits for).
	clk.Step(deletedMemory/2 + 2*time.Second)
	if n := size(); n != 1 || !c.sawDeleted("b") {
		t.Fatalf("after deletedMemory: %d remembered, want b only", n)
	}
	for !clk.HasWaiters() {
		runtime.Gosched()
	}
	clk.Step(deletedMemory + 2*time.Second)
	if n := size(); n != 0 {
		t.Fatalf("after 2 deletedMemory: %d remembered, want none", n)
	}
	c.mu.Lock()
	armed := c.pruneArmed
	c.mu.Unlock()
	if armed || clk.HasWaiters() {
		t.Errorf("nothing remembered: timer set %v (%d waiters), want none", armed, clk.Waiters())
	}
}

func TestStatusPatchMakesTheProxysStatusWantAndNothingElse(t *testing.T) {
	start := metav1.NewTime(time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC))
	running := corev1.PodStatus{
		Phase:    corev1.PodRunning,
		Message:  "running in cluster2",
		PodIP:    "10.2.0.5",
		PodIPs:   []corev1.PodIP{{IP: "10.2.0.5"}},
		QOSClass: corev1.PodQOSBurstable,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "nginx", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: start}}}},
		StartTime:         &start,
	}
	failed := corev1.PodStatus{
		Phase:    corev1.PodFailed,
		Reason:   "Evicted",
		QOSClass: corev1.PodQOSBurstable,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "nginx", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137}}}},
		StartTime:         &start,
	}
	for _, tc := range []struct {
		name     string
		from, to corev1.PodStatus
	}{
		{"pending to running: fields and a condition added", corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBurstable, Conditions: running.Conditions[:1]}, running},
		{"running to failed: message, IPs and a condition removed, a container state replaced", running, failed},
		{"failed back to nothing but the phase", failed, corev1.PodStatus{Phase: corev1.PodPending}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// What the API server holds; the cache has neither the spec
			// nor the manifest annotation, which the patch must not touch.
			live := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", ResourceVersion: "42", Annotations: map[string]string{
					v1alpha1.AnnotationSourcePodManifest: `{"kind":"Pod"}`,
				}},
				Spec:   corev1.PodSpec{NodeName: "admiralty-c2", Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}},
				Status: tc.from,
			}
			cached := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", ResourceVersion: "42"},
				Spec: corev1.PodSpec{NodeName: "admiralty-c2"}, Status: tc.from}
			patch, err := StatusPatch(cached, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			liveJSON, err := json.Marshal(live)
			if err != nil {
				t.Fatal(err)
			}
			patchedJSON, err := strategicpatch.StrategicMergePatch(liveJSON, patch, &corev1.Pod{})
			if err != nil {
				t.Fatalf("patch %s: %v", patch, err)
			}
			var patched corev1.Pod
			if err := json.Unmarshal(patchedJSON, &patched); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.to, patched.Status); diff != "" {
				t.Errorf("status after patch %s (-want +got):\n%s", patch, diff)
			}
			wantMeta := live.ObjectMeta
			if diff := cmp.Diff(wantMeta, patched.ObjectMeta); diff != "" {
				t.Errorf("metadata after patch %s (-want +got), the resourceVersion must be the cached one, a precondition:\n%s", patch, diff)
			}
			if diff := cmp.Diff(live.Spec, patched.Spec); diff != "" {
				t.Errorf("spec after patch %s (-want +got):\n%s", patch, diff)
			}
		})
	}
}

func TestStatusPatchCarriesTheCachedResourceVersion(t *testing.T) {
	patch, err := StatusPatch(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "42"}}, corev1.PodStatus{Phase: corev1.PodRunning})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(patch, &got); err != nil || got.Metadata.ResourceVersion != "42" {
		t.Errorf("patch %s: resourceVersion %q (%v), want 42", patch, got.Metadata.ResourceVersion, err)
	}
}

// A self target's delegate seen finished is never made again, even once
// deleted (a kubelet makes a deleting pod Failed too, so only a finish
// before any deletion counts); a deleted one leaves its topology spread
// constraints for the one made again.
func TestNoteSelfDelegate(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	c := &Controller{clock: clk}
	delegate := func(proxyUID string, phase corev1.PodPhase, deleting bool) *v1alpha1.PodChaperon {
		ch := &v1alpha1.PodChaperon{
			ObjectMeta: metav1.ObjectMeta{Name: "d-" + proxyUID, Labels: map[string]string{v1alpha1.LabelParentUID: proxyUID}},
			Spec: corev1.PodSpec{TopologySpreadConstraints: []corev1.TopologySpreadConstraint{
				{MaxSkew: 1, TopologyKey: "zone", WhenUnsatisfiable: corev1.DoNotSchedule},
			}},
			Status: v1alpha1.PodChaperonStatus{PodStatus: corev1.PodStatus{Phase: phase}},
		}
		if deleting {
			ch.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		}
		return ch
	}
	c.noteSelfDelegate(delegate("running", corev1.PodRunning, false), false)
	if len(c.selfDelegates.at) != 0 {
		t.Errorf("a running delegate's update is remembered: %v", c.selfDelegates.at)
	}
	c.noteSelfDelegate(delegate("done", corev1.PodSucceeded, false), false)
	c.noteSelfDelegate(delegate("done", corev1.PodSucceeded, true), true)
	if m, ok := c.selfDelegates.get("done", clk.Now()); !ok || !m.finished || !m.deleted {
		t.Errorf("finished, then deleted: %+v", m)
	}
	c.noteSelfDelegate(delegate("killed", corev1.PodFailed, true), false)
	c.noteSelfDelegate(delegate("killed", corev1.PodFailed, true), true)
	m, ok := c.selfDelegates.get("killed", clk.Now())
	if !ok || m.finished || !m.deleted || len(m.spread) != 1 || m.spread[0].TopologyKey != "zone" {
		t.Errorf("failed while being deleted: %+v, want deleted, not finished, with its spread constraint", m)
	}
}

func pod(uid string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}}
}
