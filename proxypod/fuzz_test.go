package proxypod

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// FuzzSourcePod feeds arbitrary annotation values to the parser. It must
// never panic, and whatever it accepts must hold the promises that the
// scheduler and the delegator rely on. Seeds: testdata/fuzz/FuzzSourcePod.
// Run with: go test ./proxypod -run '^$' -fuzz FuzzSourcePod -fuzztime 30s
func FuzzSourcePod(f *testing.F) {
	f.Add(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"ns"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`)
	f.Add(`{"metadata":{"namespace":"ns"},"spec":{"containers":[{"name":"c"}],"nodeName":"n"}}`)
	f.Add(`{"metadata":{"namespace":"ns"},"spec":{"containers":[{"name":"c"}],"containers":[]}}`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, data string) {
		proxy := proxyWithManifest(data)
		original, err := SourcePod(proxy)
		if err != nil {
			if !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("error %v does not wrap ErrInvalidManifest", err)
			}
			return
		}
		switch {
		case original.Namespace != proxy.Namespace:
			t.Errorf("accepted an original in namespace %q for a proxy in %q", original.Namespace, proxy.Namespace)
		case original.Name != "" && original.Name != proxy.Name:
			t.Errorf("accepted an original named %q for proxy %q", original.Name, proxy.Name)
		case original.Spec.NodeName != "":
			t.Errorf("accepted an original bound to %q", original.Spec.NodeName)
		case original.Spec.SchedulerName == v1alpha1.ProxySchedulerName || IsProxy(original):
			t.Errorf("accepted an original that is a proxy itself")
		case len(original.Spec.Containers) == 0:
			t.Errorf("accepted an original without containers")
		}
		if _, ok := original.Annotations[v1alpha1.AnnotationSourcePodManifest]; ok {
			t.Errorf("accepted a nested manifest")
		}
	})
}

// FuzzMakeProxy makes a proxy of arbitrary pods (as JSON) and reads the
// original back: for every pod that can become a proxy, SourcePod must
// return exactly what Original saved, the proxy must select and tolerate
// virtual nodes only, and a second MakeProxy must change nothing.
// Seeds: testdata/fuzz/FuzzMakeProxy.
// Run with: go test ./proxypod -run '^$' -fuzz FuzzMakeProxy -fuzztime 30s
func FuzzMakeProxy(f *testing.F) {
	f.Add(`{"metadata":{"generateName":"web-","labels":{"app":"web"},"annotations":{"multicluster.admiralty.io/elect":""}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`)
	f.Fuzz(func(t *testing.T, podJSON string) {
		pod := &corev1.Pod{}
		if err := json.Unmarshal([]byte(podJSON), pod); err != nil {
			t.Skip()
		}
		// What the API server guarantees of the pods it sends: a namespace,
		// containers, the webhook not being called on proxies' re-creations
		// with a forged label.
		pod.Namespace = "ns"
		if len(pod.Spec.Containers) == 0 || IsProxy(pod) {
			t.Skip()
		}
		before := pod.DeepCopy()
		want, wantErr := Original(before)
		if err := MakeProxy(pod); err != nil {
			if wantErr == nil {
				t.Fatalf("MakeProxy failed (%v) where Original did not", err)
			}
			if !apiequality.Semantic.DeepEqual(before, pod) {
				t.Fatalf("a refused pod was changed:\n%s", cmp.Diff(before, pod))
			}
			return
		}
		if before.Spec.NodeName != "" {
			t.Fatalf("made a proxy of a pod bound to %q", before.Spec.NodeName)
		}
		got, err := SourcePod(pod)
		if err != nil {
			t.Fatalf("SourcePod refused what MakeProxy saved: %v", err)
		}
		if !apiequality.Semantic.DeepEqual(want, got) {
			t.Fatalf("the original did not survive the round trip (-want +got):\n%s", cmp.Diff(want, got))
		}
		if !IsProxy(pod) || pod.Spec.SchedulerName != v1alpha1.ProxySchedulerName || pod.Spec.Affinity != nil ||
			len(pod.Spec.TopologySpreadConstraints) != 0 || len(pod.Spec.NodeSelector) != 1 ||
			pod.Spec.NodeSelector[v1alpha1.LabelVirtualKubeletProvider] != v1alpha1.ProviderName || !tolerates(pod.Spec.Tolerations) {
			t.Fatalf("not a proxy: labels %v, spec %+v", pod.Labels, pod.Spec)
		}
		again := pod.DeepCopy()
		if err := MakeProxy(again); err != nil || !apiequality.Semantic.DeepEqual(pod, again) {
			t.Fatalf("MakeProxy of a proxy changed it (%v):\n%s", err, cmp.Diff(pod, again))
		}
	})
}
