package chaperon

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

func chaperon() *v1alpha1.PodChaperon {
	return &v1alpha1.PodChaperon{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: "web-abc12", UID: "chap-uid",
			Labels: map[string]string{
				v1alpha1.LabelParentClusterName: "c1",
				v1alpha1.LabelParentUID:         "proxy-uid",
				v1alpha1.LabelPrefix + "app":    "web",
			},
			Annotations: map[string]string{
				v1alpha1.AnnotationParentNamespace: "ns",
				v1alpha1.AnnotationParentName:      "web",
			},
		},
		Spec: corev1.PodSpec{
			SchedulerName: v1alpha1.CandidateSchedulerName,
			Containers:    []corev1.Container{{Name: "main", Image: "nginx"}},
		},
	}
}

// delegateOf is the delegate of the unchanged chaperon().
func delegateOf(ch *v1alpha1.PodChaperon) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: "web-abc12",
			Labels: map[string]string{
				v1alpha1.LabelParentClusterName: "c1",
				v1alpha1.LabelParentUID:         "proxy-uid",
				v1alpha1.LabelPrefix + "app":    "web",
			},
			Annotations: map[string]string{
				v1alpha1.AnnotationParentNamespace: "ns",
				v1alpha1.AnnotationParentName:      "web",
				AnnotationSpecHash:                 SpecHash(&ch.Spec),
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "multicluster.admiralty.io/v1alpha1", Kind: "PodChaperon",
				Name: "web-abc12", UID: "chap-uid",
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{
			SchedulerName: v1alpha1.CandidateSchedulerName,
			Containers:    []corev1.Container{{Name: "main", Image: "nginx"}},
		},
	}
}

func TestDelegate(t *testing.T) {
	cases := []struct {
		name     string
		change   func(ch *v1alpha1.PodChaperon)
		wantDiff func(pod *corev1.Pod)
	}{{
		name:     "the delegate has the chaperon's name, labels, annotations and spec, and the chaperon as its controller",
		change:   func(*v1alpha1.PodChaperon) {},
		wantDiff: func(*corev1.Pod) {},
	}, {
		name: "the node and the integer priority are left to the target, the priority class is kept",
		change: func(ch *v1alpha1.PodChaperon) {
			ch.Spec.NodeName = "cluster2-node-0"
			ch.Spec.Priority = ptr.To[int32](1000)
			ch.Spec.PriorityClassName = "high"
		},
		wantDiff: func(pod *corev1.Pod) { pod.Spec.PriorityClassName = "high" },
	}, {
		name: "a chaperon without a parent cluster still makes a delegate that the delegates' watch sees",
		change: func(ch *v1alpha1.PodChaperon) {
			delete(ch.Labels, v1alpha1.LabelParentClusterName)
		},
		wantDiff: func(pod *corev1.Pod) { pod.Labels[v1alpha1.LabelParentClusterName] = "" },
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := chaperon()
			tc.change(ch)
			want := delegateOf(ch)
			tc.wantDiff(want)
			if diff := cmp.Diff(want, Delegate(ch)); diff != "" {
				t.Errorf("Delegate() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDelegateDoesNotShareTheChaperonsMaps(t *testing.T) {
	ch := chaperon()
	pod := Delegate(ch)
	pod.Labels["added"] = "x"
	pod.Spec.Containers[0].Image = "changed"
	if _, ok := ch.Labels["added"]; ok {
		t.Error("a label added to the delegate appeared on the chaperon")
	}
	if ch.Spec.Containers[0].Image != "nginx" {
		t.Error("a change of the delegate's spec changed the chaperon's")
	}
}

func TestSpecHash(t *testing.T) {
	base := chaperon().Spec
	cases := []struct {
		name   string
		change func(s *corev1.PodSpec)
		same   bool
	}{
		{name: "the same spec hashes the same", change: func(*corev1.PodSpec) {}, same: true},
		{name: "the node name, which the delegator writes, does not count", change: func(s *corev1.PodSpec) {
			s.NodeName = "cluster2-node-1"
		}, same: true},
		{name: "another image is another spec", change: func(s *corev1.PodSpec) {
			s.Containers[0].Image = "nginx:2"
		}, same: false},
		{name: "another node selector is another spec", change: func(s *corev1.PodSpec) {
			s.NodeSelector = map[string]string{"topology.kubernetes.io/region": "eu"}
		}, same: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			changed := *base.DeepCopy()
			tc.change(&changed)
			if got := SpecHash(&base) == SpecHash(&changed); got != tc.same {
				t.Errorf("SpecHash equal = %v, want %v", got, tc.same)
			}
		})
	}
}

func TestFinished(t *testing.T) {
	now := metav1.Now()
	cases := []struct {
		name     string
		phase    corev1.PodPhase
		deleting bool
		want     bool
	}{
		{name: "a running delegate has not finished", phase: corev1.PodRunning, want: false},
		{name: "a delegate that succeeded has finished", phase: corev1.PodSucceeded, want: true},
		{name: "a delegate that failed has finished", phase: corev1.PodFailed, want: true},
		{name: "a delegate killed because it is being deleted has not finished", phase: corev1.PodFailed, deleting: true, want: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{Status: corev1.PodStatus{Phase: tc.phase}}
			if tc.deleting {
				pod.DeletionTimestamp = &now
			}
			if got := Finished(pod); got != tc.want {
				t.Errorf("Finished() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRejectedStatus(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Minute))
	invalid := errors.New(`Pod "x" is invalid: spec.containers[0].image: Required value`)

	first := RejectedStatus(corev1.PodStatus{Phase: corev1.PodRunning, HostIP: "10.0.0.1"}, invalid, t0)
	want := corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		Message:            `the delegate pod cannot be created: Pod "x" is invalid: spec.containers[0].image: Required value`,
		LastTransitionTime: t0,
	}}}
	if diff := cmp.Diff(want, first); diff != "" {
		t.Errorf("RejectedStatus() of a running delegate's chaperon (-want +got):\n%s", diff)
	}
	// Rejected again later: the same status, so no write.
	if again := RejectedStatus(first, invalid, t1); !StatusEqual(first, again) {
		t.Errorf("RejectedStatus() again = %+v, want the unchanged %+v", again, first)
	}
}

// Unreported and JustBound: what a status says that a source reads.
func TestUnreportedAndJustBound(t *testing.T) {
	scheduled := []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
	for _, tc := range []struct {
		name                 string
		status               corev1.PodStatus
		unreported, boundNow bool
	}{
		{"chaperon before any mirror", corev1.PodStatus{}, true, false},
		{"new delegate", corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort}, true, false},
		{"bound", corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort, Conditions: scheduled}, false, true},
		{"refused by the target's scheduler", RejectedStatus(corev1.PodStatus{}, errors.New("no"), metav1.Now()), false, false},
		{"nominated for preemption", corev1.PodStatus{Phase: corev1.PodPending, NominatedNodeName: "n1"}, false, false},
		{"kubelet started it", corev1.PodStatus{Phase: corev1.PodPending, Conditions: scheduled, HostIP: "10.0.0.1"}, false, false},
		{"containers creating", corev1.PodStatus{Phase: corev1.PodPending, Conditions: scheduled, ContainerStatuses: []corev1.ContainerStatus{{Name: "main"}}}, false, false},
		{"more conditions", corev1.PodStatus{Phase: corev1.PodPending, Conditions: append([]corev1.PodCondition{{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}}, scheduled...)}, false, false},
		{"running", corev1.PodStatus{Phase: corev1.PodRunning, Conditions: scheduled}, false, false},
		{"evicted", corev1.PodStatus{Phase: corev1.PodPending, Reason: "Evicted"}, false, false},
	} {
		if got := Unreported(tc.status); got != tc.unreported {
			t.Errorf("%s: Unreported() = %v, want %v", tc.name, got, tc.unreported)
		}
		if got := JustBound(tc.status); got != tc.boundNow {
			t.Errorf("%s: JustBound() = %v, want %v", tc.name, got, tc.boundNow)
		}
	}
}
