package targets

import (
	"net/http"
	"strconv"
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// apiErrors counts the failed requests to each target, in whichever
// process holds the connection (the delegator, the scheduler's plugin).
var (
	apiErrors = metrics.NewCounterVec(&metrics.CounterOpts{
		Name: "admiralty_target_api_errors_total",
		Help: "Requests to a target's API server that failed, by target and code: the HTTP status, or \"error\" when no response came " +
			"(connection refused, timeout, TLS). 404 and 409, which callers expect (a deleted object, a create that finds its own), are not counted.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"target", "code"})
	registerMetrics sync.Once
)

// countErrors wraps a target's transport to count its failed requests.
func countErrors(target string) func(http.RoundTripper) http.RoundTripper {
	registerMetrics.Do(func() { legacyregistry.MustRegister(apiErrors) })
	return func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			switch {
			case err != nil:
				if req.Context().Err() == nil {
					apiErrors.WithLabelValues(target, "error").Inc()
				}
			case resp.StatusCode >= 400 && resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusConflict:
				apiErrors.WithLabelValues(target, strconv.Itoa(resp.StatusCode)).Inc()
			}
			return resp, err
		})
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
