package integration

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/delegator/feedback"
)

// The feedback writes a proxy's status from the delegator's trimmed cache
// (no spec but the node, no manifest annotation) with a patch conditioned on
// the cached resourceVersion: against a real API server, a stale copy is
// refused with a Conflict, and a current one changes the status only.
func TestProxyStatusPatchFromTheTrimmedCache(t *testing.T) {
	c2 := sandbox.Clusters[1]
	ctx := testContext(t, time.Minute)
	ns := namespace(t, c2, "status-patch", nil)
	pods := c2.Client.CoreV1().Pods(ns)
	// Bound to a node no kwok manages: nothing else writes its status.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "proxy", Annotations: map[string]string{
			v1alpha1.AnnotationSourcePodManifest: `{"kind":"Pod","apiVersion":"v1"}`,
			corev1.LastAppliedConfigAnnotation:   `{"kind":"Pod"}`,
			"kept":                               "yes",
		}},
		Spec: corev1.PodSpec{NodeName: "admiralty-nowhere", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	live, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	trimmed := func(p *corev1.Pod) *corev1.Pod {
		obj, err := app.TrimProxy(p.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		return obj.(*corev1.Pod)
	}
	stale := trimmed(live)
	if len(stale.Spec.Containers) > 0 || stale.Annotations[v1alpha1.AnnotationSourcePodManifest] != "" || stale.Annotations["kept"] != "yes" {
		t.Fatalf("TrimProxy kept %+v, annotations %v", stale.Spec, stale.Annotations)
	}
	// Someone else writes the proxy meanwhile.
	if _, err := pods.Patch(ctx, "proxy", types.MergePatchType, []byte(`{"metadata":{"labels":{"touched":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	want := corev1.PodStatus{
		Phase:      corev1.PodRunning,
		PodIP:      "10.2.0.9",
		PodIPs:     []corev1.PodIP{{IP: "10.2.0.9"}},
		StartTime:  &now,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
	}
	patch, err := feedback.StatusPatch(stale, want)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pods.Patch(ctx, "proxy", types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if !apierrors.IsConflict(err) {
		t.Fatalf("status patch from a stale copy: got %v, want a Conflict", err)
	}

	current, err := pods.Get(ctx, "proxy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want.QOSClass = current.Status.QOSClass // set by the API server at creation
	patch, err = feedback.StatusPatch(trimmed(current), want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pods.Patch(ctx, "proxy", types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatalf("status patch from a current copy: %v", err)
	}
	if diff := cmp.Diff(want, got.Status); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(current.Spec, got.Spec); diff != "" {
		t.Errorf("the patch changed the spec (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(current.Annotations, got.Annotations); diff != "" {
		t.Errorf("the patch changed the annotations (-before +after):\n%s", diff)
	}
}
