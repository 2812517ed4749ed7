package v1alpha1

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
