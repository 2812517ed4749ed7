// Package v1alpha1 holds the multicluster.admiralty.io/v1alpha1 API: the
// kinds, and the well-known annotation and label keys, of the original
// project, kept as they were so that its users' manifests work unchanged.
//
// +kubebuilder:object:generate=true
// +groupName=multicluster.admiralty.io
package v1alpha1
