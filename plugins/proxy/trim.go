package proxy

import (
	v1 "k8s.io/api/core/v1"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets"
)

// trimPod is the transform of the scheduler's pod cache, which holds every
// pod of the cluster not finished, bound proxies included until they are
// deleted. It does what the upstream transform it replaces does (no managed
// fields) and leaves out a bound proxy's original manifest: PreFilter reads
// it, before binding; a bound pod is never scheduled again, and the
// scheduler never updates a pod from its cache (it patches the status and
// binds). The manifest is about as large as the rest of a small proxy.
func trimPod(obj any) (any, error) {
	if _, err := targets.DropManagedFields(obj); err != nil {
		return obj, err
	}
	pod, ok := obj.(*v1.Pod)
	if !ok || pod.Spec.NodeName == "" || pod.Labels[v1alpha1.LabelIsProxy] != "true" {
		return obj, nil
	}
	delete(pod.Annotations, v1alpha1.AnnotationSourcePodManifest)
	return pod, nil
}
