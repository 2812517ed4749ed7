// Package proxypod is the proxy pod model that the webhook, the scheduler
// plugins and the delegator share: which pods are elected, how an elected
// pod becomes a proxy (the original saved in an annotation, the pod itself
// steered to virtual nodes), and how the original is read back, refusing a
// saved manifest that was tampered with. Everything here is a pure
// function of its arguments.
package proxypod

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	kjson "sigs.k8s.io/json"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// AnnotationNoElect on a pod (or pod template) opts it out of namespace-wide
// election: in a namespace annotated v1alpha1.AnnotationElect, every pod is
// elected but those that carry this annotation (any value). It does not
// override the pod's own v1alpha1.AnnotationElect or a schedulerName of
// v1alpha1.ProxySchedulerName, which are explicit requests.
const AnnotationNoElect = v1alpha1.GroupName + "/no-elect"

// EnabledValue is the value of the namespace label
// v1alpha1.LabelNamespaceEnabled that opts a namespace in.
const EnabledValue = "enabled"

// serviceAccountVolumePrefix prefixes the name of the token volume that the
// ServiceAccount admission plugin injects (ServiceAccountVolumeName in
// k8s.io/kubernetes/plugin/pkg/admission/serviceaccount). The plugin skips
// a pod that already has such a volume, so carrying the source's to a
// target would leave the delegate without a token of its own cluster.
const serviceAccountVolumePrefix = "kube-api-access-"

// mirrorPodAnnotation marks the API mirror of a kubelet's static pod
// (corev1.MirrorPodAnnotationKey in the internal API).
const mirrorPodAnnotation = "kubernetes.io/config.mirror"

// Errors of SourcePod, for errors.Is: a pod without the annotation is not a
// proxy; a proxy whose annotation does not hold an acceptable original was
// written by something other than the webhook, or tampered with.
var (
	ErrNotProxy        = errors.New("not a proxy pod: no " + v1alpha1.AnnotationSourcePodManifest + " annotation")
	ErrInvalidManifest = errors.New("invalid " + v1alpha1.AnnotationSourcePodManifest + " annotation")
)

// Toleration is the toleration of virtual nodes' taint that every proxy
// carries.
var Toleration = corev1.Toleration{
	Key:      v1alpha1.LabelVirtualKubeletProvider,
	Operator: corev1.TolerationOpEqual,
	Value:    v1alpha1.ProviderName,
	Effect:   corev1.TaintEffectNoSchedule,
}

// taint is virtual nodes' taint, which Toleration tolerates.
var taint = corev1.Taint{Key: Toleration.Key, Value: Toleration.Value, Effect: Toleration.Effect}

// IsProxy tells whether pod is a proxy pod (labeled by MakeProxy).
func IsProxy(pod *corev1.Pod) bool {
	return pod != nil && pod.Labels[v1alpha1.LabelIsProxy] == "true"
}

// IsDelegate tells whether pod was made from a PodChaperon, i.e. is the
// delegate (or candidate) of a proxy in some source: it is never elected,
// or a cluster that targets itself would make proxies of its own delegates.
func IsDelegate(pod *corev1.Pod) bool {
	if pod == nil {
		return false
	}
	_, ok := pod.Labels[v1alpha1.LabelParentUID]
	return ok || pod.Spec.SchedulerName == v1alpha1.CandidateSchedulerName
}

// NamespaceEnabled tells whether the namespace opted in to multi-cluster
// scheduling with the label multicluster-scheduler=enabled.
func NamespaceEnabled(ns *corev1.Namespace) bool {
	return ns != nil && ns.Labels[v1alpha1.LabelNamespaceEnabled] == EnabledValue
}

// ElectsAll tells whether an enabled namespace elects every pod created in
// it (namespace-wide election, the annotation v1alpha1.AnnotationElect on
// the namespace).
func ElectsAll(ns *corev1.Namespace) bool {
	if !NamespaceEnabled(ns) {
		return false
	}
	_, ok := ns.Annotations[v1alpha1.AnnotationElect]
	return ok
}

// ExplicitlyElected tells whether the pod itself asks to become a proxy:
// the annotation v1alpha1.AnnotationElect (any value, as in the original
// project, whose documentation sets it to "") or the proxy scheduler's name.
func ExplicitlyElected(pod *corev1.Pod) bool {
	_, ok := pod.Annotations[v1alpha1.AnnotationElect]
	return ok || pod.Spec.SchedulerName == v1alpha1.ProxySchedulerName
}

// Elected tells whether pod, being created in namespace, must become a
// proxy. The namespace must be labeled multicluster-scheduler=enabled; then
// a pod is elected when it asks for it (ExplicitlyElected), or when the
// namespace elects all its pods and the pod neither opts out
// (AnnotationNoElect) nor belongs to a node: namespace-wide election leaves
// alone the pods whose placement on a node is decided by something else
// than a scheduler (spec.nodeName set, static pods' mirrors, DaemonSet
// pods). Proxies and delegates are never elected, so that mutation is
// idempotent and a cluster that targets itself does not loop.
func Elected(pod *corev1.Pod, namespace *corev1.Namespace) bool {
	if pod == nil || !NamespaceEnabled(namespace) {
		return false
	}
	if pod.Namespace != "" && pod.Namespace != namespace.Name {
		return false
	}
	if IsProxy(pod) || IsDelegate(pod) {
		return false
	}
	if ExplicitlyElected(pod) {
		return true
	}
	if !ElectsAll(namespace) {
		return false
	}
	if _, ok := pod.Annotations[AnnotationNoElect]; ok {
		return false
	}
	return !nodeBound(pod)
}

// nodeBound tells whether the pod's node is not a scheduler's choice.
func nodeBound(pod *corev1.Pod) bool {
	if pod.Spec.NodeName != "" {
		return true
	}
	if _, ok := pod.Annotations[mirrorPodAnnotation]; ok {
		return true
	}
	if ref := metav1.GetControllerOf(pod); ref != nil && ref.Kind == "DaemonSet" && strings.HasPrefix(ref.APIVersion, "apps/") {
		return true
	}
	return false
}

// MakeProxy turns an elected pod, as the API server hands it to the
// webhook (defaulted, after the built-in admission plugins), into a proxy:
//
//   - the original is saved, as JSON, in the annotation
//     v1alpha1.AnnotationSourcePodManifest: its name or generateName,
//     namespace, labels and annotations, and its spec without what belongs
//     to the source cluster (see Original);
//   - the pod is labeled v1alpha1.LabelIsProxy=true, scheduled by
//     v1alpha1.ProxySchedulerName, selects and tolerates virtual nodes
//     only; its affinity and topology spread constraints are removed (they
//     stay in the original, which the scheduler simulates in each target).
//
// A pod that already is a proxy is left as it is. A pod bound to a node
// (spec.nodeName) cannot become a proxy: MakeProxy returns an error and
// leaves the pod unchanged.
func MakeProxy(pod *corev1.Pod) error {
	if IsProxy(pod) {
		return nil
	}
	original, err := Original(pod)
	if err != nil {
		return err
	}
	data, err := json.Marshal(original)
	if err != nil {
		return fmt.Errorf("saving the original pod: %w", err)
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[v1alpha1.AnnotationSourcePodManifest] = string(data)
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[v1alpha1.LabelIsProxy] = "true"
	pod.Spec.SchedulerName = v1alpha1.ProxySchedulerName
	pod.Spec.NodeSelector = map[string]string{v1alpha1.LabelVirtualKubeletProvider: v1alpha1.ProviderName}
	pod.Spec.Affinity = nil
	pod.Spec.TopologySpreadConstraints = nil
	if !tolerates(pod.Spec.Tolerations) {
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, Toleration)
	}
	pod.Spec.Tolerations = tolerateOutages(pod.Spec.Tolerations)
	return nil
}

// OutageTolerations: a proxy tolerates its virtual node's NotReady and
// unreachable NoExecute taints forever, so that the node lifecycle
// controller's taint-based eviction (300 s by the DefaultTolerationSeconds
// admission) never deletes it: the delegator decides, per target, when the
// proxies of an unreachable target go (its failover controller).
var OutageTolerations = []corev1.Toleration{
	{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
}

// tolerateOutages replaces the tolerations of OutageTolerations' taints
// (the admission's 300 s, or the pod's own, which stay in the original)
// with OutageTolerations.
func tolerateOutages(tolerations []corev1.Toleration) []corev1.Toleration {
	out := make([]corev1.Toleration, 0, len(tolerations)+len(OutageTolerations))
	for _, t := range tolerations {
		if (t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable) && t.Effect == corev1.TaintEffectNoExecute {
			continue
		}
		out = append(out, t)
	}
	return append(out, OutageTolerations...)
}

// tolerates tells whether one of tolerations already tolerates the taint
// of virtual nodes (e.g. an Exists on its key).
func tolerates(tolerations []corev1.Toleration) bool {
	for _, t := range tolerations {
		if t.ToleratesTaint(klog.Background(), &taint, false) {
			return true
		}
	}
	return false
}

// Original is the pod that MakeProxy saves: a deep copy of pod's name,
// generateName, namespace, labels, annotations (but the saved manifest
// itself, should the pod carry one) and spec. The spec drops what the
// source cluster's admission added and what only makes sense there, so
// that the target's admission does its own part for the delegate:
//
//   - the service-account token volume (kube-api-access-*) and its mounts:
//     the target's ServiceAccount admission mounts a token of its cluster;
//   - spec.priority, which the Priority admission computed from the
//     source's PriorityClass and would refuse if the target's differs;
//   - scheduling gates, which the source's controllers lift on the proxy
//     and nobody would lift in a target;
//   - a schedulerName of admiralty-proxy, replaced by the default scheduler
//     (the delegate must not become a proxy in its turn).
//
// Nothing else of the object is kept (no UID, owner references, finalizers
// or status): the delegate is a new object in another cluster.
func Original(pod *corev1.Pod) (*corev1.Pod, error) {
	if pod.Spec.NodeName != "" {
		return nil, fmt.Errorf("pod is bound to node %q (spec.nodeName): it bypasses scheduling and cannot become a proxy", pod.Spec.NodeName)
	}
	original := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:         pod.Name,
			GenerateName: pod.GenerateName,
			Namespace:    pod.Namespace,
			Labels:       copyMap(pod.Labels, ""),
			Annotations:  copyMap(pod.Annotations, v1alpha1.AnnotationSourcePodManifest),
		},
		Spec: *pod.Spec.DeepCopy(),
	}
	spec := &original.Spec
	stripServiceAccountToken(spec)
	spec.Priority = nil
	spec.SchedulingGates = nil
	if spec.SchedulerName == v1alpha1.ProxySchedulerName {
		spec.SchedulerName = corev1.DefaultSchedulerName
	}
	return original, nil
}

func copyMap(m map[string]string, except string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if k != except {
			out[k] = v
		}
	}
	return out
}

// stripServiceAccountToken removes the volume that the ServiceAccount
// admission plugin injects (recognized by its name prefix and its
// projected service-account token, so that a user's own volume is kept)
// and every container's mount of it.
func stripServiceAccountToken(spec *corev1.PodSpec) {
	stripped := map[string]bool{}
	var volumes []corev1.Volume
	for _, v := range spec.Volumes {
		if isServiceAccountTokenVolume(v) {
			stripped[v.Name] = true
			continue
		}
		volumes = append(volumes, v)
	}
	if len(stripped) == 0 {
		return
	}
	spec.Volumes = volumes
	strip := func(mounts []corev1.VolumeMount) []corev1.VolumeMount {
		var out []corev1.VolumeMount
		for _, m := range mounts {
			if !stripped[m.Name] {
				out = append(out, m)
			}
		}
		return out
	}
	for i := range spec.InitContainers {
		spec.InitContainers[i].VolumeMounts = strip(spec.InitContainers[i].VolumeMounts)
	}
	for i := range spec.Containers {
		spec.Containers[i].VolumeMounts = strip(spec.Containers[i].VolumeMounts)
	}
	for i := range spec.EphemeralContainers {
		spec.EphemeralContainers[i].VolumeMounts = strip(spec.EphemeralContainers[i].VolumeMounts)
	}
}

func isServiceAccountTokenVolume(v corev1.Volume) bool {
	if !strings.HasPrefix(v.Name, serviceAccountVolumePrefix) || v.Projected == nil {
		return false
	}
	for _, s := range v.Projected.Sources {
		if s.ServiceAccountToken != nil {
			return true
		}
	}
	return false
}

// SourcePod reads back the original pod that MakeProxy saved on proxy. It
// refuses, with an error wrapping ErrNotProxy or ErrInvalidManifest, an
// annotation that is missing, is not a v1 Pod in JSON (or repeats a field,
// which parsers may resolve differently), or describes a pod that MakeProxy
// never saves: in another namespace than the proxy, with another name,
// without containers, bound to a node, scheduled by the proxy scheduler,
// labeled as a proxy or nesting a saved manifest. Unknown fields are ignored, so that a newer
// webhook's manifests stay readable.
func SourcePod(proxy *corev1.Pod) (*corev1.Pod, error) {
	if proxy == nil {
		return nil, ErrNotProxy
	}
	data, ok := proxy.Annotations[v1alpha1.AnnotationSourcePodManifest]
	if !ok {
		return nil, ErrNotProxy
	}
	original := &corev1.Pod{}
	// Case-sensitive, as the API server decodes; unknown fields allowed.
	strictErrs, err := kjson.UnmarshalStrict([]byte(data), original, kjson.DisallowDuplicateFields)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidManifest, err)
	}
	if len(strictErrs) > 0 {
		return nil, fmt.Errorf("%w: %v", ErrInvalidManifest, errors.Join(strictErrs...))
	}
	if err := validateOriginal(original, proxy); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidManifest, err)
	}
	return original, nil
}

func validateOriginal(original, proxy *corev1.Pod) error {
	if (original.APIVersion != "" || original.Kind != "") && (original.APIVersion != "v1" || original.Kind != "Pod") {
		return fmt.Errorf("holds a %s %s, not a v1 Pod", original.APIVersion, original.Kind)
	}
	if original.Namespace != proxy.Namespace {
		return fmt.Errorf("namespace %q, but the proxy is in %q", original.Namespace, proxy.Namespace)
	}
	// Pods of controllers are named by the API server after admission: the
	// original then has a generateName and no name.
	if original.Name != "" && original.Name != proxy.Name {
		return fmt.Errorf("name %q, but the proxy is %q", original.Name, proxy.Name)
	}
	if len(original.Spec.Containers) == 0 {
		return fmt.Errorf("no containers: not a pod")
	}
	if original.Spec.NodeName != "" {
		return fmt.Errorf("spec.nodeName %q: the original pod must not be bound to a node", original.Spec.NodeName)
	}
	if original.Spec.SchedulerName == v1alpha1.ProxySchedulerName {
		return fmt.Errorf("spec.schedulerName %q: the original pod would be a proxy in its target", original.Spec.SchedulerName)
	}
	if IsProxy(original) {
		return fmt.Errorf("label %s=true: the original pod would be a proxy in its target", v1alpha1.LabelIsProxy)
	}
	if _, ok := original.Annotations[v1alpha1.AnnotationSourcePodManifest]; ok {
		return fmt.Errorf("nests another %s annotation", v1alpha1.AnnotationSourcePodManifest)
	}
	return nil
}
