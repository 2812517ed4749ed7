package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/component-base/metrics/testutil"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/proxypod"
)

var namespaces = map[string]*corev1.Namespace{
	"enabled": {ObjectMeta: metav1.ObjectMeta{Name: "enabled", Labels: map[string]string{v1alpha1.LabelNamespaceEnabled: "enabled"}}},
	"plain":   {ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	"all": {ObjectMeta: metav1.ObjectMeta{Name: "all",
		Labels:      map[string]string{v1alpha1.LabelNamespaceEnabled: "enabled"},
		Annotations: map[string]string{v1alpha1.AnnotationElect: ""}}},
}

func getNamespace(_ context.Context, name string) (*corev1.Namespace, error) {
	if name == "unreachable" {
		return nil, errors.New("connection refused")
	}
	if ns, ok := namespaces[name]; ok {
		return ns, nil
	}
	return nil, apierrors.NewNotFound(corev1.Resource("namespaces"), name)
}

func testPod(annotations map[string]string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Annotations: annotations, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			SchedulerName: corev1.DefaultSchedulerName,
			NodeSelector:  map[string]string{"topology.kubernetes.io/region": "eu"},
			Tolerations:   []corev1.Toleration{{Key: "a/b~c", Operator: corev1.TolerationOpExists}},
			Containers:    []corev1.Container{{Name: "c", Image: "nginx"}},
			Affinity:      &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{}},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func review(t *testing.T, namespace string, pod *corev1.Pod, mutate ...func(*admissionv1.AdmissionRequest)) []byte {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	req := &admissionv1.AdmissionRequest{
		UID:       "0f2c",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
	for _, m := range mutate {
		m(req)
	}
	body, err := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestHandler(t *testing.T) {
	elect := map[string]string{v1alpha1.AnnotationElect: ""}
	tests := []struct {
		name        string
		body        func(t *testing.T) []byte
		method      string
		wantCode    int
		wantAllowed bool
		wantMessage string // in the denial or the HTTP error
		wantWarning string
		wantProxy   bool
		wantResult  string
	}{
		{name: "An elected pod in an enabled namespace becomes a proxy.",
			body:     func(t *testing.T) []byte { return review(t, "enabled", testPod(elect)) },
			wantCode: 200, wantAllowed: true, wantProxy: true, wantResult: resultProxied},
		{name: "A pod without the annotation is left alone.",
			body:     func(t *testing.T) []byte { return review(t, "enabled", testPod(nil)) },
			wantCode: 200, wantAllowed: true, wantResult: resultUnchanged},
		{name: "An elected pod in a namespace without the label is left alone.",
			body:     func(t *testing.T) []byte { return review(t, "plain", testPod(elect)) },
			wantCode: 200, wantAllowed: true, wantResult: resultUnchanged},
		{name: "A namespace annotated elect makes a proxy of a pod without annotations.",
			body:     func(t *testing.T) []byte { return review(t, "all", testPod(nil)) },
			wantCode: 200, wantAllowed: true, wantProxy: true, wantResult: resultProxied},
		{name: "A pod opted out with no-elect is left alone in a namespace that elects all.",
			body: func(t *testing.T) []byte {
				return review(t, "all", testPod(map[string]string{proxypod.AnnotationNoElect: ""}))
			},
			wantCode: 200, wantAllowed: true, wantResult: resultUnchanged},
		{name: "An elected pod bound to a node is denied with the reason.",
			body: func(t *testing.T) []byte {
				return review(t, "enabled", testPod(elect, func(p *corev1.Pod) { p.Spec.NodeName = "node-1" }))
			},
			wantCode: 200, wantAllowed: false, wantMessage: `bound to node "node-1"`, wantResult: resultDenied},
		{name: "A pod whose object names another namespace than the request is denied.",
			body: func(t *testing.T) []byte {
				return review(t, "enabled", testPod(elect, func(p *corev1.Pod) { p.Namespace = "kube-system" }))
			},
			wantCode: 200, wantAllowed: false, wantMessage: `namespace "kube-system" is not the request's "enabled"`, wantResult: resultDenied},
		{name: "A pod that cannot be decoded is denied with the decoding error.",
			body: func(t *testing.T) []byte {
				return review(t, "enabled", testPod(elect), func(r *admissionv1.AdmissionRequest) {
					r.Object.Raw = []byte(`{"spec":{"containers":"nginx"}}`)
				})
			},
			wantCode: 200, wantAllowed: false, wantMessage: "cannot decode the pod", wantResult: resultDenied},
		{name: "A request about something else than a pod creation is allowed unchanged, with a warning.",
			body: func(t *testing.T) []byte {
				return review(t, "enabled", testPod(elect), func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Update })
			},
			wantCode: 200, wantAllowed: true, wantWarning: "only pod creations", wantResult: resultUnchanged},
		{name: "A namespace that cannot be looked up fails the request, for the failurePolicy to decide.",
			body:     func(t *testing.T) []byte { return review(t, "unreachable", testPod(elect)) },
			wantCode: 500, wantMessage: "looking up namespace unreachable", wantResult: resultError},
		{name: "A body that is not JSON is a bad request.",
			body:     func(*testing.T) []byte { return []byte(`{"apiVersion":`) },
			wantCode: 400, wantMessage: "decoding the AdmissionReview", wantResult: resultError},
		{name: "An AdmissionReview of another version is a bad request.",
			body: func(*testing.T) []byte {
				return []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`)
			},
			wantCode: 400, wantMessage: "admission.k8s.io/v1beta1", wantResult: resultError},
		{name: "An AdmissionReview without a request is a bad request.",
			body: func(*testing.T) []byte {
				return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`)
			},
			wantCode: 400, wantMessage: "with a request", wantResult: resultError},
		{name: "A GET is refused.",
			method:   http.MethodGet,
			body:     func(*testing.T) []byte { return nil },
			wantCode: 405, wantResult: resultError},
	}
	h := NewHandler(ktesting.NewLogger(t, ktesting.NewConfig()), getNamespace)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := testutil.GetCounterMetricValue(requests.WithLabelValues(tt.wantResult))
			body := tt.body(t)
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, Path, bytes.NewReader(body)))
			if after, _ := testutil.GetCounterMetricValue(requests.WithLabelValues(tt.wantResult)); after != before+1 {
				t.Errorf("requests_total{result=%q} went from %v to %v, want +1", tt.wantResult, before, after)
			}
			if rec.Code != tt.wantCode {
				t.Fatalf("status %d, want %d; body: %s", rec.Code, tt.wantCode, rec.Body)
			}
			if rec.Code != 200 {
				if !strings.Contains(rec.Body.String(), tt.wantMessage) {
					t.Errorf("error %q, want it to say %q", rec.Body, tt.wantMessage)
				}
				return
			}
			out := &admissionv1.AdmissionReview{}
			if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
				t.Fatal(err)
			}
			if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil || out.Response.UID != "0f2c" {
				t.Fatalf("not a response to the review: %s", rec.Body)
			}
			resp := out.Response
			if resp.Allowed != tt.wantAllowed {
				t.Fatalf("allowed = %v, want %v (%+v)", resp.Allowed, tt.wantAllowed, resp.Result)
			}
			if tt.wantMessage != "" && (resp.Result == nil || !strings.Contains(resp.Result.Message, tt.wantMessage)) {
				t.Errorf("result %+v, want a message saying %q", resp.Result, tt.wantMessage)
			}
			if tt.wantWarning != "" && !strings.Contains(strings.Join(resp.Warnings, "\n"), tt.wantWarning) {
				t.Errorf("warnings %q, want one saying %q", resp.Warnings, tt.wantWarning)
			}
			if !tt.wantProxy {
				if resp.Patch != nil {
					t.Errorf("patched a pod that must be left alone: %s", resp.Patch)
				}
				return
			}
			// The patch, applied as the API server does, makes exactly the
			// proxy that MakeProxy makes.
			if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("patch type %v, want JSONPatch", resp.PatchType)
			}
			in := &admissionv1.AdmissionReview{}
			if err := json.Unmarshal(body, in); err != nil {
				t.Fatal(err)
			}
			patch, err := jsonpatch.DecodePatch(resp.Patch)
			if err != nil {
				t.Fatalf("invalid JSON Patch %s: %v", resp.Patch, err)
			}
			patched, err := patch.Apply(in.Request.Object.Raw)
			if err != nil {
				t.Fatalf("JSON Patch %s does not apply: %v", resp.Patch, err)
			}
			got := &corev1.Pod{}
			if err := json.Unmarshal(patched, got); err != nil {
				t.Fatal(err)
			}
			want := &corev1.Pod{}
			if err := json.Unmarshal(in.Request.Object.Raw, want); err != nil {
				t.Fatal(err)
			}
			want.Namespace = in.Request.Namespace
			if err := proxypod.MakeProxy(want); err != nil {
				t.Fatal(err)
			}
			// The namespace is recorded in the saved original only: the API
			// server sets the proxy's own.
			want.Namespace = ""
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("patched pod (-want +got):\n%s", diff)
			}
			original, err := proxypod.SourcePod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: in.Request.Namespace, Annotations: got.Annotations}})
			if err != nil {
				t.Fatalf("the saved original does not read back: %v", err)
			}
			if original.Namespace != in.Request.Namespace {
				t.Errorf("saved original in namespace %q, want the request's %q", original.Namespace, in.Request.Namespace)
			}
		})
	}
}

// FuzzHandler sends arbitrary bodies: the handler must never panic, and
// must answer every body with a review or a client or server error.
// Run with: go test ./delegator/webhook -run '^$' -fuzz FuzzHandler -fuzztime 30s
// -fuzzminimizetime 2s (minimizing the large seeds dominates otherwise).
func FuzzHandler(f *testing.F) {
	t := &testing.T{}
	f.Add(review(t, "enabled", testPod(map[string]string{v1alpha1.AnnotationElect: ""})))
	f.Add(review(t, "all", testPod(nil)))
	f.Add(review(t, "enabled", testPod(nil, func(p *corev1.Pod) { p.Spec.NodeName = "n" })))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"namespace":"enabled","operation":"CREATE","object":null}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{"metadata":{"annotations":{"multicluster.admiralty.io/elect":""}}}}}`))
	h := NewHandler(klog.Background().V(10), getNamespace)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body)))
		switch rec.Code {
		case http.StatusOK:
			out := &admissionv1.AdmissionReview{}
			if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil || out.Response == nil {
				t.Fatalf("200 without a review: %s", rec.Body)
			}
			if out.Response.Patch != nil {
				if _, err := jsonpatch.DecodePatch(out.Response.Patch); err != nil {
					t.Fatalf("invalid patch %s: %v", out.Response.Patch, err)
				}
			}
		case http.StatusBadRequest, http.StatusInternalServerError:
		default:
			t.Fatalf("status %d", rec.Code)
		}
	})
}
