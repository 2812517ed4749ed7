package v1alpha1

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// IsVirtualNode tells whether n is one of Admiralty's virtual nodes.
func IsVirtualNode(n *corev1.Node) bool {
	return n != nil && n.Labels[LabelVirtualKubeletProvider] == ProviderName
}

// Well-known names that users and other tools see. They are the original
// project's, unchanged, so that its documentation and manifests keep working.
const (
	// GroupName is the API group of the multicluster kinds.
	GroupName = "multicluster.admiralty.io"

	// AnnotationElect on a pod (or pod template) in a namespace labeled
	// LabelNamespaceEnabled makes the pod multi-cluster: it becomes a proxy.
	AnnotationElect = GroupName + "/elect"
	// AnnotationClusterName pins a pod to the target with that cluster name.
	AnnotationClusterName = GroupName + "/clustername"
	// AnnotationNoReservation takes the single-candidate path.
	AnnotationNoReservation = GroupName + "/no-reservation"

	// LabelNamespaceEnabled with value "enabled" opts a namespace in.
	LabelNamespaceEnabled = "multicluster-scheduler"

	// LabelVirtualKubeletProvider marks virtual nodes, with value ProviderName.
	LabelVirtualKubeletProvider = "virtual-kubelet.io/provider"
	// ProviderName is the virtual-kubelet provider name of Admiralty's nodes.
	ProviderName = "admiralty"

	// ProxySchedulerName and CandidateSchedulerName are the profiles of
	// kube-scheduler-admiralty that schedule proxy pods (onto virtual nodes)
	// and candidate pods (onto the real nodes of a target).
	ProxySchedulerName     = "admiralty-proxy"
	CandidateSchedulerName = "admiralty-candidate"
)

// Keys of the proxy-delegate contract. A proxy pod lives in the source; for
// it, the source's scheduler creates one PodChaperon in the chosen target,
// from which the target's delegator makes the delegate pod.
const (
	// AnnotationSourcePodManifest on a proxy pod holds the original pod (as
	// the user created it, before the webhook made it a proxy), as JSON.
	AnnotationSourcePodManifest = GroupName + "/sourcepod-manifest"
	// LabelIsProxy with value "true" marks proxy pods, so that components
	// watch only those.
	LabelIsProxy = GroupName + "/is-proxy"

	// LabelPrefix prefixes the keys of the original pod's labels on the
	// delegate ("app" becomes "multicluster.admiralty.io/app"), so that
	// services and controllers of the target never select delegates by
	// accident.
	LabelPrefix = GroupName + "/"

	// Labels on PodChaperons and delegates, in the target, that name their
	// proxy in the source. Two sources never collide: the source cluster's
	// name is part of every generated name and selector.
	LabelParentClusterName    = GroupName + "/parent-cluster"
	LabelParentUID            = GroupName + "/parent-uid"
	AnnotationParentNamespace = GroupName + "/parent-namespace"
	AnnotationParentName      = GroupName + "/parent-name"

	// AnnotationProxyPod on a delegate names its proxy pod (namespace/name)
	// in the source, for people reading the target.
	AnnotationProxyPod = GroupName + "/proxy-pod"

	// LabelTargetName on a virtual node names the target it stands for
	// (the Target's or ClusterTarget's name), the value that
	// AnnotationClusterName matches.
	LabelTargetName = GroupName + "/cluster-name"
)

// PrefixedLabelKey is the key of an original pod's label on its delegate:
// "app" becomes "multicluster.admiralty.io/app" and a key that has a
// prefix keeps it, extended, "batch.kubernetes.io/job-name" becoming
// "batch.kubernetes.io.multicluster.admiralty.io/job-name" (a label key has
// at most one "/").
func PrefixedLabelKey(key string) string {
	if i := strings.LastIndex(key, "/"); i >= 0 {
		return key[:i] + "." + LabelPrefix + key[i+1:]
	}
	return LabelPrefix + key
}
