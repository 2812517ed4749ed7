package proxy

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/component-base/metrics/testutil"
	clocktesting "k8s.io/utils/clock/testing"
)

// Each way an attempt ends is counted under its result, once, with the
// candidate wait only for attempts whose chaperon reached the target, and
// the Event that explains it.
func TestAttempts(t *testing.T) {
	rec := events.NewFakeRecorder(10)
	clock := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a := newAttempts(rec, clock)
	pod := func(uid string) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p-" + uid, UID: types.UID(uid)}}
	}
	target := "metrics-test/c2"
	forgetTargetMetrics(target) // -count: the series are global
	started := clock.Now().Add(-time.Second)

	a.reserved(pod("scheduled"), target, started, false)
	a.sent("scheduled", "PodChaperon", "p-scheduled-abcde")
	a.decided("scheduled", true, "")
	a.bound("scheduled")
	a.bound("scheduled") // a second end is ignored

	// A later attempt says where it goes at once.
	a.reserved(pod("refused"), target, started, true)
	a.sent("refused", "PodChaperon", "p-refused-abcde")
	a.decided("refused", false, "c2 refused the candidate: 0/3 nodes are available: 3 Insufficient cpu.")
	a.unreserved("refused", "no answer within 30s")

	a.reserved(pod("timeout"), target, started, false)
	a.sent("timeout", "PodChaperon", "p-timeout-abcde")
	a.timedOut("timeout")
	a.decided("timeout", false, "no answer within 30s")
	a.unreserved("timeout", "no answer within 5m0s")

	a.reserved(pod("error"), target, started, false)
	a.decided("error", false, "c2: cannot create the PodChaperon: forbidden")
	a.unreserved("error", "no answer within 30s")

	a.unreserved("never-reserved", "")

	// A verdict that takes longer than chosenEventDelay: the pod says
	// where it waits.
	a.reserved(pod("slow"), "metrics-test/c3", started, false)
	a.sent("slow", "Delegate", "p-slow-abcde")
	clock.Step(chosenEventDelay)
	// Recorded off the clock's callback: the last Event below.
	want := []string{
		"Normal TargetChosen PodChaperon ns/p-refused-abcde sent to target metrics-test/c2",
		"Warning TargetRefused c2 refused the candidate: 0/3 nodes are available: 3 Insufficient cpu.",
		"Warning TargetRefused metrics-test/c2: no answer within 30s",
		"Warning SendFailed c2: cannot create the PodChaperon: forbidden",
		"Normal TargetChosen Delegate ns/p-slow-abcde sent to target metrics-test/c3",
	}
	for _, w := range want {
		select {
		case got := <-rec.Events:
			if !strings.HasPrefix(got, w) {
				t.Errorf("event %q, want %q...", got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event, want %q", w)
		}
	}
	a.decided("slow", true, "")
	a.bound("slow")
	if len(a.m) != 0 {
		t.Errorf("%d attempts left behind", len(a.m))
	}

	for _, result := range []string{ResultScheduled, ResultRefused, ResultTimeout, ResultError} {
		got, err := testutil.GetCounterMetricValue(schedulingAttempts.WithLabelValues(result, target))
		if err != nil || got != 1 {
			t.Errorf("attempts{result=%s}: %v, %v; want 1", result, got, err)
		}
		n, err := testutil.GetHistogramMetricCount(schedulingDuration.WithLabelValues(result, target))
		if err != nil || n != 1 {
			t.Errorf("attempt duration{result=%s}: %d observations, %v; want 1", result, n, err)
		}
		wantWait := uint64(1)
		if result == ResultError {
			wantWait = 0
		}
		n, err = testutil.GetHistogramMetricCount(candidateWait.WithLabelValues(result, target))
		if err != nil || n != wantWait {
			t.Errorf("candidate wait{result=%s}: %d observations, %v; want %d", result, n, err, wantWait)
		}
	}
	sum, _ := testutil.GetHistogramMetricValue(schedulingDuration.WithLabelValues(ResultScheduled, target))
	if sum < 1 {
		t.Errorf("attempt duration of the scheduled pod: %v s, want at least 1 s (from PreFilter)", sum)
	}

	select {
	case got := <-rec.Events:
		t.Errorf("unexpected event %q", got)
	default:
	}
}
