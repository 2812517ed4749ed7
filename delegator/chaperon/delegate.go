package chaperon

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets"
)

// AnnotationSpecHash on a delegate is the hash of the chaperon spec it was
// made from, so that a later change of that spec is noticed (and ignored,
// with an Event) although the API server defaults and mutates the pod's own
// spec beyond recognition.
const AnnotationSpecHash = v1alpha1.GroupName + "/chaperon-spec-hash"

// Kind is the PodChaperon kind, for owner references.
var Kind = v1alpha1.SchemeGroupVersion.WithKind("PodChaperon")

// Delegate is the pod a chaperon stands for (targets.DelegatePod: same
// namespace, name, labels and annotations, its spec), with the hash of
// that spec and the chaperon as its controller, so that deleting the
// chaperon garbage-collects the pod.
//
// Two fields of the spec are left to the target:
//   - nodeName: the target's own scheduler places every delegate, a
//     recreated one anew (the chaperon's spec.nodeName is where the
//     previous delegate ran, as this controller reports it);
//   - priority: the target's Priority admission resolves
//     priorityClassName there, and rejects a pod whose integer priority
//     disagrees with the class.
func Delegate(ch *v1alpha1.PodChaperon) *corev1.Pod {
	pod := targets.DelegatePod(ch)
	// The delegator watches delegates by this label; a chaperon made by
	// hand without it still has its delegate seen.
	if _, ok := pod.Labels[v1alpha1.LabelParentClusterName]; !ok {
		if pod.Labels == nil {
			pod.Labels = map[string]string{}
		}
		pod.Labels[v1alpha1.LabelParentClusterName] = ""
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationSpecHash] = SpecHash(&ch.Spec)
	pod.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(ch, Kind)}
	return pod
}

// SpecHash identifies a chaperon spec, except its nodeName, which this
// controller writes.
func SpecHash(spec *corev1.PodSpec) string {
	s := spec.DeepCopy()
	s.NodeName = ""
	// encoding/json sorts map keys: the same spec always hashes the same.
	data, err := json.Marshal(s)
	if err != nil {
		// A PodSpec always marshals; never seen.
		data = []byte(fmt.Sprintf("%#v", s))
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])[:16]
}

// IsTerminal tells whether a phase is final.
func IsTerminal(phase corev1.PodPhase) bool {
	return phase == corev1.PodSucceeded || phase == corev1.PodFailed
}

// Finished tells whether a delegate ended on its own: a terminal phase
// reached before any deletion. Such a delegate is never run again. A
// kubelet also makes a pod Failed or Succeeded when it kills it because
// the pod is being deleted; that one did not finish, and is made again.
func Finished(pod *corev1.Pod) bool {
	return IsTerminal(pod.Status.Phase) && pod.DeletionTimestamp == nil
}

const rejectedPrefix = "the delegate pod cannot be created: "

// RejectedStatus is a chaperon's status when its delegate cannot be
// created. PodScheduled=False with reason Unschedulable is what a source
// reads as the target refusing the candidate, the same answer as when the
// target's scheduler finds no node, so the source moves on at once instead
// of waiting for its timeout; the message carries the API error.
func RejectedStatus(cur corev1.PodStatus, err error, now metav1.Time) corev1.PodStatus {
	msg := rejectedPrefix + strings.TrimSpace(err.Error())
	cond := corev1.PodCondition{
		Type:               corev1.PodScheduled,
		Status:             corev1.ConditionFalse,
		Reason:             corev1.PodReasonUnschedulable,
		Message:            msg,
		LastTransitionTime: now,
	}
	for _, c := range cur.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == cond.Status && c.Reason == cond.Reason {
			cond.LastTransitionTime = c.LastTransitionTime
		}
	}
	return corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{cond}}
}

// StatusEqual tells whether a chaperon already shows status.
func StatusEqual(a, b corev1.PodStatus) bool {
	return apiequality.Semantic.DeepEqual(a, b)
}

// Unreported tells whether a pod status says nothing yet that a source
// reads: a new pod's (Pending, its QoS class, no condition, no container
// status) or a chaperon's before anything was mirrored. Mirroring a new
// delegate's status would cost a write, and a watch event for every
// watcher of chaperons, to tell the source that a pod it knows to exist is
// Pending.
func Unreported(s corev1.PodStatus) bool {
	return (s.Phase == "" || s.Phase == corev1.PodPending) &&
		len(s.Conditions) == 0 &&
		len(s.ContainerStatuses) == 0 &&
		len(s.InitContainerStatuses) == 0 &&
		len(s.EphemeralContainerStatuses) == 0 &&
		s.Reason == "" && s.Message == "" &&
		s.NominatedNodeName == "" && s.HostIP == "" && s.PodIP == ""
}

// JustBound tells whether a pod status says only that the pod is bound: a
// delegate's between its binding (PodScheduled, which the binding sets)
// and the first word of its kubelet, or a chaperon's that mirrors it.
func JustBound(s corev1.PodStatus) bool {
	if len(s.Conditions) != 1 || s.Conditions[0].Type != corev1.PodScheduled || s.Conditions[0].Status != corev1.ConditionTrue {
		return false
	}
	s.Conditions = nil
	return Unreported(s)
}
