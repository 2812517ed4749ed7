package proxy

import (
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/utils/clock"
)

// Results of a proxy's scheduling attempt that reached a target (Reserve),
// the label of the metrics. A proxy that fits no target never reaches
// Reserve: the upstream scheduler_schedule_attempts_total{result=
// "unschedulable",profile="admiralty-proxy"} counts those.
const (
	// ResultScheduled: the target placed the candidate; the proxy binds.
	ResultScheduled = "scheduled"
	// ResultRefused: the target's scheduler (or its API server, for the
	// delegate) refused the candidate.
	ResultRefused = "refused"
	// ResultTimeout: no verdict within candidateTimeout.
	ResultTimeout = "timeout"
	// ResultError: the PodChaperon could not be sent (API error), or the
	// proxy's previous delegate was still being deleted.
	ResultError = "error"
)

// Buckets of the latency histograms: 5 ms to 60 s.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 45, 60}

var (
	schedulingAttempts = metrics.NewCounterVec(&metrics.CounterOpts{
		Name:           "admiralty_proxy_scheduling_attempts_total",
		Help:           "Scheduling attempts of proxy pods that chose a target, by result (scheduled, refused, timeout, error) and target.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result", "target"})
	schedulingDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Name:           "admiralty_proxy_scheduling_attempt_duration_seconds",
		Help:           "Duration of a proxy pod's scheduling attempt, from PreFilter to the target's verdict, by result and target.",
		Buckets:        latencyBuckets,
		StabilityLevel: metrics.ALPHA,
	}, []string{"result", "target"})
	candidateWait = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Name:           "admiralty_proxy_candidate_wait_seconds",
		Help:           "Time from the PodChaperon's creation in the target to the target's verdict on the candidate, by result and target.",
		Buckets:        latencyBuckets,
		StabilityLevel: metrics.ALPHA,
	}, []string{"result", "target"})

	inFlight = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Name:           "admiralty_proxy_chaperons_in_flight",
		Help:           "PodChaperons this scheduler sent to a target and has no verdict on yet, by target (at most maxInFlightPerTarget).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"target"})
	queued = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Name:           "admiralty_proxy_send_queue_length",
		Help:           "Proxy pods that chose a target and wait for a place among its chaperons in flight (maxInFlightPerTarget), by target.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"target"})

	registerMetrics sync.Once
)

// Reasons of the Events on proxy pods about their targets (the upstream
// Scheduled and FailedScheduling say the rest).
const (
	// ReasonTargetChosen (Normal): the PodChaperon is in the chosen target,
	// whose scheduler now places the candidate; recorded when the verdict
	// takes more than chosenEventDelay, or the pod had an attempt before.
	ReasonTargetChosen = "TargetChosen"
	// ReasonTargetRefused (Warning): the target refused the candidate, or
	// gave no verdict within candidateTimeout; it is avoided by this pod for
	// refusedTargetTTL.
	ReasonTargetRefused = "TargetRefused"
	// ReasonSendFailed (Warning): the PodChaperon could not be created.
	ReasonSendFailed = "SendFailed"
)

// attempts follows each proxy's attempt from Reserve to PostBind or
// Unreserve, which the framework calls once after Reserve, so that nothing
// stays behind: metrics, and Events on the proxy.
type attempts struct {
	recorder events.EventRecorder // nil: no Events (unit tests)
	clock    clock.WithDelayedExecution
	mu       sync.Mutex
	m        map[types.UID]*attempt
}

type attempt struct {
	proxy    *v1.Pod
	target   string
	started  time.Time // PreFilter
	sent     time.Time // the chaperon exists in the target
	decided  bool
	timedOut bool // no verdict: the target made no progress in time
	allowed  bool
	message  string
	kind     string // of what was sent: PodChaperon, or Delegate (self target)
	chaperon string
	retry    bool
}

func newAttempts(recorder events.EventRecorder, c clock.WithDelayedExecution) *attempts {
	registerMetrics.Do(func() {
		legacyregistry.MustRegister(schedulingAttempts, schedulingDuration, candidateWait, inFlight, queued)
	})
	return &attempts{recorder: recorder, clock: c, m: map[types.UID]*attempt{}}
}

// reserved starts following the attempt of proxy to target; started is
// when its scheduling cycle began.
//
// retry: the pod had an attempt before (refused, timed out, failed).
func (a *attempts) reserved(proxy *v1.Pod, target string, started time.Time, retry bool) {
	if started.IsZero() {
		started = a.clock.Now()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.m[proxy.UID] = &attempt{proxy: proxy, target: target, started: started, retry: retry}
}

// sent records that the chaperon exists in the target; kind is
// "PodChaperon", or "Delegate" in a self target (targets.SelfChaperons).
func (a *attempts) sent(uid types.UID, kind, chaperon string) {
	a.mu.Lock()
	at := a.m[uid]
	if at == nil || !at.sent.IsZero() {
		a.mu.Unlock()
		return
	}
	at.sent, at.kind, at.chaperon = a.clock.Now(), kind, chaperon
	retry := at.retry
	a.mu.Unlock()
	if retry {
		a.chosen(at)
		return
	}
	// A verdict that comes soon is told by the upstream Scheduled Event
	// (which names the virtual node, so the target): one write less per
	// pod. A pod that waits long says where. Under load most verdicts take
	// a few seconds; an Event for each was one API write in thirteen.
	a.clock.AfterFunc(chosenEventDelay, func() {
		// Not under a fake clock's lock: a.mu is held around reading it.
		go func() {
			a.mu.Lock()
			waiting := a.m[uid] == at && !at.decided
			a.mu.Unlock()
			if waiting {
				a.chosen(at)
			}
		}()
	})
}

// chosenEventDelay: the TargetChosen Event is recorded when the target has
// not decided within it, or at once on a pod's later attempts.
const chosenEventDelay = 5 * time.Second

func (a *attempts) chosen(at *attempt) {
	a.event(at.proxy, v1.EventTypeNormal, ReasonTargetChosen, "Delegate", "%s %s/%s sent to target %s, whose scheduler places the candidate", at.kind, at.proxy.Namespace, at.chaperon, at.target)
}

// decided records the verdict (or why there is none).
func (a *attempts) decided(uid types.UID, allowed bool, message string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if at := a.m[uid]; at != nil && !at.decided {
		at.decided, at.allowed, at.message = true, allowed, message
	}
}

// timedOut records that the target gave no verdict in time.
func (a *attempts) timedOut(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if at := a.m[uid]; at != nil && !at.decided {
		at.timedOut = true
	}
}

// bound ends the attempt as scheduled.
func (a *attempts) bound(uid types.UID) { a.end(uid, true, "") }

// unreserved ends the attempt as failed; timeoutMessage explains an
// attempt that got no verdict.
func (a *attempts) unreserved(uid types.UID, timeoutMessage string) {
	a.end(uid, false, timeoutMessage)
}

func (a *attempts) end(uid types.UID, bound bool, timeoutMessage string) {
	a.mu.Lock()
	at := a.m[uid]
	delete(a.m, uid)
	a.mu.Unlock()
	if at == nil {
		return
	}
	var result string
	switch {
	case bound:
		result = ResultScheduled
	case (at.timedOut || !at.decided) && !at.sent.IsZero():
		// Timed out by the plugin (its message), or by the framework's
		// bound on Permit (undecided).
		result = ResultTimeout
		message := timeoutMessage
		if at.timedOut {
			message = at.message
		}
		a.event(at.proxy, v1.EventTypeWarning, ReasonTargetRefused, "Delegate", "%s: %s", at.target, message)
	case at.decided && !at.allowed && !at.sent.IsZero():
		result = ResultRefused
		a.event(at.proxy, v1.EventTypeWarning, ReasonTargetRefused, "Delegate", "%s", at.message)
	default:
		// Never sent: an API error, or the previous delegate still going
		// (or another plugin's failure after Reserve).
		result = ResultError
		if at.message != "" {
			a.event(at.proxy, v1.EventTypeWarning, ReasonSendFailed, "Delegate", "%s", at.message)
		}
	}
	now := a.clock.Now()
	schedulingAttempts.WithLabelValues(result, at.target).Inc()
	schedulingDuration.WithLabelValues(result, at.target).Observe(now.Sub(at.started).Seconds())
	if !at.sent.IsZero() {
		candidateWait.WithLabelValues(result, at.target).Observe(now.Sub(at.sent).Seconds())
	}
}

func (a *attempts) event(proxy *v1.Pod, eventType, reason, action, format string, args ...any) {
	if a.recorder == nil {
		return
	}
	a.recorder.Eventf(proxy, nil, eventType, reason, action, "%s", fmt.Sprintf(format, args...))
}

// forgetTargetMetrics deletes the series of a target that is gone.
func forgetTargetMetrics(target string) {
	for _, result := range []string{ResultScheduled, ResultRefused, ResultTimeout, ResultError} {
		labels := map[string]string{"result": result, "target": target}
		schedulingAttempts.Delete(labels)
		schedulingDuration.Delete(labels)
		candidateWait.Delete(labels)
	}
	inFlight.DeleteLabelValues(target)
	queued.DeleteLabelValues(target)
}
