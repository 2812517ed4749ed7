package service

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func svc(selector, annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx", Namespace: "ns", Annotations: annotations},
		Spec:       corev1.ServiceSpec{Selector: selector},
	}
}

func TestDesired(t *testing.T) {
	app := map[string]string{"app": "nginx"}
	prefixed := map[string]string{"multicluster.admiralty.io/app": "nginx"}
	rerouted := map[string]string{
		AnnotationOriginalSelector: `{"app":"nginx"}`,
		AnnotationGlobalService:    "true",
		AnnotationGlobalAdded:      "true",
	}
	cases := []struct {
		name            string
		in              *corev1.Service
		matches         bool
		wantSelector    map[string]string
		wantAnnotations map[string]string
		unchanged       bool
	}{
		{
			name:            "a service selecting proxies is rerouted and made global",
			in:              svc(app, nil),
			matches:         true,
			wantSelector:    prefixed,
			wantAnnotations: rerouted,
		},
		{
			name:    "a rerouted service whose proxies are still there is left alone",
			in:      svc(prefixed, rerouted),
			matches: true, unchanged: true,
		},
		{
			name:            "a rerouted service without proxies gets its selector back and loses the annotations it was given",
			in:              svc(prefixed, rerouted),
			wantSelector:    app,
			wantAnnotations: map[string]string{},
		},
		{
			name:            "a service that was global before the reroute stays global after it",
			in:              svc(prefixed, map[string]string{AnnotationOriginalSelector: `{"app":"nginx"}`, AnnotationGlobalService: "true", "other": "x"}),
			wantSelector:    app,
			wantAnnotations: map[string]string{AnnotationGlobalService: "true", "other": "x"},
		},
		{
			name:      "a service that selects no proxy is left alone",
			in:        svc(app, nil),
			unchanged: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			original, err := OriginalSelector(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			got := Desired(tc.in, original, tc.matches)
			if tc.unchanged {
				if got != nil {
					t.Errorf("Desired changed the service: %v %v", got.Spec.Selector, got.Annotations)
				}
				return
			}
			if got == nil {
				t.Fatal("Desired left the service as it is")
			}
			if diff := cmp.Diff(tc.wantSelector, got.Spec.Selector); diff != "" {
				t.Errorf("selector (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAnnotations, got.Annotations); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOriginalSelector(t *testing.T) {
	// A selector edited by hand after the reroute is the new original.
	s := svc(map[string]string{"app": "other"}, map[string]string{AnnotationOriginalSelector: `{"app":"nginx"}`})
	got, err := OriginalSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"app": "other"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := OriginalSelector(svc(nil, map[string]string{AnnotationOriginalSelector: "{"})); err == nil {
		t.Error("an unreadable annotation is not an error")
	}
}
