package proxy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

func TestTrimPodDropsTheManifestOfBoundProxiesOnly(t *testing.T) {
	pod := func(proxy bool, node string) *v1.Pod {
		p := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name:          "p",
				Labels:        map[string]string{"app": "web"},
				Annotations:   map[string]string{v1alpha1.AnnotationSourcePodManifest: `{"kind":"Pod"}`, "team": "a"},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			},
			Spec: v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c", Image: "nginx"}}},
		}
		if proxy {
			p.Labels[v1alpha1.LabelIsProxy] = "true"
		}
		return p
	}
	for _, tc := range []struct {
		name         string
		pod          *v1.Pod
		keepManifest bool
	}{
		{"a proxy waiting to be scheduled keeps it: PreFilter reads it", pod(true, ""), true},
		{"a bound proxy loses it", pod(true, "admiralty-c2"), false},
		{"an ordinary pod with the same annotation keeps it", pod(false, "node-1"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.pod.DeepCopy()
			want.ManagedFields = nil
			if !tc.keepManifest {
				delete(want.Annotations, v1alpha1.AnnotationSourcePodManifest)
			}
			got, err := trimPod(tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("trimPod (-want +got):\n%s", diff)
			}
		})
	}
}
