// Package webhook is the delegator's mutating admission webhook on pod
// creation: an elected pod (proxypod.Elected) becomes a proxy
// (proxypod.MakeProxy) through a JSON Patch.
//
// Every replica serves it (Server), with a serving certificate read from a
// Secret; the leader (Manager) issues and rotates that certificate and its
// CA, and applies the MutatingWebhookConfiguration with the CA bundle. No
// cert-manager is needed.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	kjson "sigs.k8s.io/json"

	"admiralty.io/multicluster-scheduler/proxypod"
)

// Results of an admission request, the label of the metrics.
const (
	resultProxied   = "proxied"   // the pod was made a proxy
	resultUnchanged = "unchanged" // the pod is not elected
	resultDenied    = "denied"    // elected, but cannot be a proxy
	resultError     = "error"     // bad request or internal error: the failurePolicy decides
)

// maxRequestBytes bounds what is read of a request: a pod is at most what
// etcd stores (1.5 MiB by default), an AdmissionReview twice that.
const maxRequestBytes = 4 << 20

var (
	requestDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace:      "admiralty",
		Subsystem:      "webhook",
		Name:           "request_duration_seconds",
		Help:           "Time to answer a pod admission request, by result (proxied, unchanged, denied, error).",
		Buckets:        []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
	requests = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace:      "admiralty",
		Subsystem:      "webhook",
		Name:           "requests_total",
		Help:           "Pod admission requests, by result (proxied, unchanged, denied, error).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
	registerMetrics sync.Once
)

// NamespaceGetter returns the namespace named name, as fresh as the
// election needs.
type NamespaceGetter func(ctx context.Context, name string) (*corev1.Namespace, error)

// Handler answers AdmissionReviews (admission.k8s.io/v1) for pod creation.
type Handler struct {
	namespace NamespaceGetter
	logger    logr.Logger
}

// NewHandler returns the admission handler; it registers the webhook's
// metrics in the legacy registry, which the delegator serves on /metrics.
func NewHandler(logger logr.Logger, namespace NamespaceGetter) *Handler {
	registerMetrics.Do(func() { legacyregistry.MustRegister(requestDuration, requests) })
	return &Handler{namespace: namespace, logger: logger}
}

// httpError is a failure to answer at all: the API server applies the
// webhook's failurePolicy.
type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	review, result, err := h.serve(w, r)
	requests.WithLabelValues(result).Inc()
	requestDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	if err != nil {
		var he *httpError
		code := http.StatusInternalServerError
		if errors.As(err, &he) {
			code = he.code
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(review); err != nil {
		h.logger.Error(err, "Writing the admission response")
	}
}

// serve decodes the review and answers it. An error means no answer: the
// request is malformed (400) or the webhook cannot decide (500).
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) (*admissionv1.AdmissionReview, string, error) {
	logger := h.logger
	if r.Method != http.MethodPost {
		logger.Info("Refused a request", "method", r.Method, "path", r.URL.Path, "remoteAddr", r.RemoteAddr)
		return nil, resultError, &httpError{http.StatusMethodNotAllowed, fmt.Errorf("method %s: want POST", r.Method)}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		logger.Info("Refused a request: cannot read its body", "remoteAddr", r.RemoteAddr, "err", err)
		return nil, resultError, &httpError{http.StatusBadRequest, fmt.Errorf("reading the request: %w", err)}
	}
	in := &admissionv1.AdmissionReview{}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, in); err != nil {
		logger.Info("Refused a request: not an AdmissionReview", "remoteAddr", r.RemoteAddr, "err", err)
		return nil, resultError, &httpError{http.StatusBadRequest, fmt.Errorf("decoding the AdmissionReview: %w", err)}
	}
	if in.APIVersion != admissionv1.SchemeGroupVersion.String() || in.Kind != "AdmissionReview" || in.Request == nil {
		logger.Info("Refused a request: not an admission.k8s.io/v1 AdmissionReview with a request", "remoteAddr", r.RemoteAddr, "apiVersion", in.APIVersion, "kind", in.Kind)
		return nil, resultError, &httpError{http.StatusBadRequest, fmt.Errorf("want an admission.k8s.io/v1 AdmissionReview with a request, got %s %s", in.APIVersion, in.Kind)}
	}
	resp, result, err := h.admit(r.Context(), in.Request)
	if err != nil {
		return nil, result, err
	}
	resp.UID = in.Request.UID
	return &admissionv1.AdmissionReview{TypeMeta: in.TypeMeta, Response: resp}, result, nil
}

func (h *Handler) admit(ctx context.Context, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string, error) {
	logger := h.logger.WithValues("uid", req.UID, "pod", klog.KRef(req.Namespace, req.Name))
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" || req.Operation != admissionv1.Create {
		// The configuration never sends these; answer without changing
		// anything rather than fail someone else's request.
		logger.Info("Ignored a request that is not a pod creation", "kind", req.Kind, "subResource", req.SubResource, "operation", req.Operation)
		allow.Warnings = []string{"admiralty webhook: only pod creations are handled; nothing changed"}
		return allow, resultUnchanged, nil
	}
	pod := &corev1.Pod{}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(req.Object.Raw, pod); err != nil {
		logger.Info("Denied a pod that cannot be decoded", "err", err)
		return denied(http.StatusBadRequest, fmt.Sprintf("admiralty webhook: cannot decode the pod: %v", err)), resultDenied, nil
	}
	// The object of a namespaced creation may omit its namespace; the
	// saved original must name it (SourcePod compares it with the proxy's).
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	if pod.Namespace != req.Namespace {
		logger.Info("Denied a pod whose namespace is not the request's", "podNamespace", pod.Namespace)
		return denied(http.StatusBadRequest, fmt.Sprintf("admiralty webhook: the pod's namespace %q is not the request's %q", pod.Namespace, req.Namespace)), resultDenied, nil
	}
	if pod.GenerateName != "" && pod.Name == "" {
		logger = logger.WithValues("generateName", pod.GenerateName)
	}
	ns, err := h.namespace(ctx, req.Namespace)
	if err != nil {
		logger.Error(err, "Cannot look up the pod's namespace; the webhook's failurePolicy decides")
		return nil, resultError, &httpError{http.StatusInternalServerError, fmt.Errorf("looking up namespace %s: %w", req.Namespace, err)}
	}
	if !proxypod.Elected(pod, ns) {
		logger.V(5).Info("Pod not elected")
		return allow, resultUnchanged, nil
	}
	proxy := pod.DeepCopy()
	if err := proxypod.MakeProxy(proxy); err != nil {
		logger.Info("Denied an elected pod that cannot become a proxy", "err", err)
		return denied(http.StatusUnprocessableEntity, fmt.Sprintf("admiralty webhook: the pod is elected for multi-cluster scheduling but %v", err)), resultDenied, nil
	}
	patch, err := jsonPatch(pod, proxy)
	if err != nil {
		logger.Error(err, "Cannot compute the patch")
		return nil, resultError, &httpError{http.StatusInternalServerError, err}
	}
	logger.V(2).Info("Made the pod a proxy", "explicit", proxypod.ExplicitlyElected(pod), "dryRun", req.DryRun != nil && *req.DryRun)
	allow.Patch = patch
	allow.PatchType = ptr.To(admissionv1.PatchTypeJSONPatch)
	return allow, resultProxied, nil
}

func denied(code int32, message string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{
		Allowed: false,
		Result:  &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: message},
	}
}
