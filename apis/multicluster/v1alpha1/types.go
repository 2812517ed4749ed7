package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types and reasons on Targets, ClusterTargets, Sources and
// ClusterSources.
const (
	// ConditionReady is True when the object does its job: a target is
	// reachable and authorized, a source's identity and bindings exist.
	ConditionReady = "Ready"
)

// DefaultKubeconfigSecretKey is the key of the kubeconfig in a kubeconfig
// Secret, as the Getting Started creates it (--from-literal=config=...).
const DefaultKubeconfigSecretKey = "config"

// TargetSpec says how to reach a target cluster from this (source) cluster.
type TargetSpec struct {
	// Self makes this cluster its own target, through the delegator's own
	// identity; no kubeconfig Secret is needed.
	// +optional
	Self bool `json:"self,omitempty"`
	// KubeconfigSecret holds a kubeconfig for the target cluster, in the
	// Target's namespace.
	// +optional
	KubeconfigSecret *KubeconfigSecret `json:"kubeconfigSecret,omitempty"`
	// UnreachableGracePeriodSeconds is how long the target may stay
	// unreachable (its virtual node NotReady) before the proxies on its
	// virtual node that a controller owns (ReplicaSet, Job, StatefulSet...)
	// are deleted, so that their controllers recreate them in reachable
	// targets. Unset: the delegator's --unreachable-grace-period. Proxies
	// without a controller are never deleted for an outage.
	// +kubebuilder:validation:Minimum=0
	// +optional
	UnreachableGracePeriodSeconds *int64 `json:"unreachableGracePeriodSeconds,omitempty"`
}

// KubeconfigSecret references a Secret that holds a kubeconfig.
type KubeconfigSecret struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Key of the kubeconfig in the Secret's data; default "config".
	// +optional
	Key string `json:"key,omitempty"`
}

// ClusterTargetSpec is TargetSpec at the cluster scope.
type ClusterTargetSpec struct {
	// Self makes this cluster its own target.
	// +optional
	Self bool `json:"self,omitempty"`
	// KubeconfigSecret holds a kubeconfig for the target cluster.
	// +optional
	KubeconfigSecret *NamespacedKubeconfigSecret `json:"kubeconfigSecret,omitempty"`
	// UnreachableGracePeriodSeconds is how long the target may stay
	// unreachable (its virtual node NotReady) before the proxies on its
	// virtual node that a controller owns (ReplicaSet, Job, StatefulSet...)
	// are deleted, so that their controllers recreate them in reachable
	// targets. Unset: the delegator's --unreachable-grace-period. Proxies
	// without a controller are never deleted for an outage.
	// +kubebuilder:validation:Minimum=0
	// +optional
	UnreachableGracePeriodSeconds *int64 `json:"unreachableGracePeriodSeconds,omitempty"`
}

// NamespacedKubeconfigSecret references a Secret in any namespace.
type NamespacedKubeconfigSecret struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Namespace of the Secret.
	// +kubebuilder:validation:MinLength=1
	Namespace string `json:"namespace"`
	// Key of the kubeconfig in the Secret's data; default "config".
	// +optional
	Key string `json:"key,omitempty"`
}

// TargetStatus is observed by the target controller.
type TargetStatus struct {
	// Conditions: Ready says whether the target answers and authorizes us.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// VirtualNodeName is the name of the node that stands for the target.
	// +optional
	VirtualNodeName string `json:"virtualNodeName,omitempty"`
}

// Target is a cluster where pods of its namespace may run; scheduling and
// delegation act only in that namespace of the target.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=admiralty
// +kubebuilder:printcolumn:name="Self",type=boolean,JSONPath=`.spec.self`
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.spec.kubeconfigSecret.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Target struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TargetSpec   `json:"spec,omitempty"`
	Status TargetStatus `json:"status,omitempty"`
}

// TargetList is a list of Targets.
//
// +kubebuilder:object:root=true
type TargetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Target `json:"items"`
}

// ClusterTarget is a cluster where pods of any namespace may run.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=admiralty
// +kubebuilder:printcolumn:name="Self",type=boolean,JSONPath=`.spec.self`
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.spec.kubeconfigSecret.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterTarget struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ClusterTargetSpec `json:"spec,omitempty"`
	Status TargetStatus      `json:"status,omitempty"`
}

// ClusterTargetList is a list of ClusterTargets.
//
// +kubebuilder:object:root=true
type ClusterTargetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterTarget `json:"items"`
}

// SourceSpec names the identity of a source cluster in this (target)
// cluster: a ServiceAccount of the Source's namespace or a user.
type SourceSpec struct {
	// ServiceAccountName is created if it does not exist.
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// UserName, for identities that are not service accounts.
	// +optional
	UserName string `json:"userName,omitempty"`
}

// ServiceAccountReference names a ServiceAccount in any namespace.
type ServiceAccountReference struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	Namespace string `json:"namespace"`
}

// ClusterSourceSpec names a source's identity at the cluster scope.
type ClusterSourceSpec struct {
	// ServiceAccount is created if it does not exist.
	// +optional
	ServiceAccount *ServiceAccountReference `json:"serviceAccount,omitempty"`
	// UserName, for identities that are not service accounts.
	// +optional
	UserName string `json:"userName,omitempty"`
}

// SourceStatus is observed by the source controller.
type SourceStatus struct {
	// Conditions: Ready says whether the identity and its bindings exist.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Source authorizes a source cluster's identity in one namespace.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=admiralty
// +kubebuilder:printcolumn:name="ServiceAccount",type=string,JSONPath=`.spec.serviceAccountName`
// +kubebuilder:printcolumn:name="User",type=string,JSONPath=`.spec.userName`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Source struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SourceSpec   `json:"spec,omitempty"`
	Status SourceStatus `json:"status,omitempty"`
}

// SourceList is a list of Sources.
//
// +kubebuilder:object:root=true
type SourceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Source `json:"items"`
}

// ClusterSource authorizes a source cluster's identity in every namespace.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=admiralty
// +kubebuilder:printcolumn:name="ServiceAccount",type=string,JSONPath=`.spec.serviceAccount.name`
// +kubebuilder:printcolumn:name="Namespace",type=string,JSONPath=`.spec.serviceAccount.namespace`
// +kubebuilder:printcolumn:name="User",type=string,JSONPath=`.spec.userName`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
type ClusterSource struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ClusterSourceSpec `json:"spec,omitempty"`
	Status SourceStatus      `json:"status,omitempty"`
}

// ClusterSourceList is a list of ClusterSources.
//
// +kubebuilder:object:root=true
type ClusterSourceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterSource `json:"items"`
}

// PodChaperon is created by a source in a target cluster for a proxy pod
// that chose that target. Its spec is the delegate's pod spec; the target's
// delegator makes the delegate pod from it and reports the delegate's status
// in its status, which the source feeds back to the proxy.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=admiralty,shortName=chap
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.nodeName`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PodChaperon struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Spec corev1.PodSpec `json:"spec,omitempty"`
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Status PodChaperonStatus `json:"status,omitempty"`
}

// PodChaperonStatus is the delegate's status, as the target's delegator
// mirrors it, and the node it is bound to.
type PodChaperonStatus struct {
	corev1.PodStatus `json:",inline"`
	// NodeName is the node of the delegate whose status this is, once
	// bound (a pod's status does not say). Written with the status that
	// first shows the delegate bound: a source takes its verdict from it.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
}

// PodChaperonList is a list of PodChaperons.
//
// +kubebuilder:object:root=true
type PodChaperonList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodChaperon `json:"items"`
}

// ClusterSummary is a cluster singleton (named after the cluster) that
// holds the sum of its nodes' capacity and allocatable resources: all that a
// source may see of a target beyond its own namespaces.
//
// +genclient
// +genclient:nonNamespaced
// +genclient:onlyVerbs=get,list,watch,create,update,delete
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=admiralty
type ClusterSummary struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Capacity is the sum of the Ready nodes' capacity.
	// +optional
	Capacity corev1.ResourceList `json:"capacity,omitempty"`
	// Allocatable is the sum of the Ready nodes' allocatable resources.
	// +optional
	Allocatable corev1.ResourceList `json:"allocatable,omitempty"`
	// Nodes summarizes each schedulable node: what a source's scheduler
	// needs to simulate a pod against this cluster (labels, taints,
	// allocatable and requested resources, host ports in use), without the
	// right to list the cluster's nodes and pods.
	// +optional
	// +listType=map
	// +listMapKey=name
	Nodes []NodeSummary `json:"nodes,omitempty"`
}

// NodeSummary is one node of a ClusterSummary.
type NodeSummary struct {
	// Name of the node.
	Name string `json:"name"`
	// Labels of the node.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Taints of the node.
	// +optional
	Taints []corev1.Taint `json:"taints,omitempty"`
	// Ready is the node's Ready condition.
	Ready bool `json:"ready"`
	// Unschedulable is the node's spec.unschedulable.
	// +optional
	Unschedulable bool `json:"unschedulable,omitempty"`
	// Allocatable resources of the node.
	// +optional
	Allocatable corev1.ResourceList `json:"allocatable,omitempty"`
	// Requested is the sum of the requests of the node's non-terminal pods.
	// +optional
	Requested corev1.ResourceList `json:"requested,omitempty"`
	// Pods is the number of non-terminal pods on the node.
	// +optional
	Pods int32 `json:"pods,omitempty"`
	// HostPorts in use on the node, as "protocol/ip/port".
	// +optional
	HostPorts []string `json:"hostPorts,omitempty"`
}

// ClusterSummaryList is a list of ClusterSummaries.
//
// +kubebuilder:object:root=true
type ClusterSummaryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterSummary `json:"items"`
}
