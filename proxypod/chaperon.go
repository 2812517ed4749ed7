package proxypod

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/names"
)

// ChaperonName is the name of a proxy's PodChaperon (and delegate) in any
// target: the proxy's name and a hash of the source cluster and the proxy's
// UID, so that two sources, or two incarnations of one proxy name, never
// share a name, and a retry after a restart finds its own chaperon.
func ChaperonName(proxy *corev1.Pod, sourceCluster string) string {
	return names.Fit(proxy.Name, names.MaxLabel-6) + "-" + names.Hash(sourceCluster+"/"+string(proxy.UID), 5)
}

// MakeChaperon builds the PodChaperon of a proxy: the delegate's metadata
// and spec, made from the original pod (source).
func MakeChaperon(source, proxy *corev1.Pod, sourceCluster string) (*v1alpha1.PodChaperon, error) {
	if proxy.UID == "" {
		return nil, fmt.Errorf("proxy %s/%s has no UID", proxy.Namespace, proxy.Name)
	}
	labels := map[string]string{}
	for k, v := range source.Labels {
		labels[v1alpha1.PrefixedLabelKey(k)] = v
	}
	// Label values are at most 63 characters: a long cluster name is fitted.
	labels[v1alpha1.LabelParentClusterName] = names.Fit(sourceCluster, names.MaxLabel)
	labels[v1alpha1.LabelParentUID] = string(proxy.UID)
	annotations := map[string]string{}
	for k, v := range source.Annotations {
		if k == v1alpha1.AnnotationElect {
			continue
		}
		annotations[k] = v
	}
	annotations[v1alpha1.AnnotationParentNamespace] = proxy.Namespace
	annotations[v1alpha1.AnnotationParentName] = proxy.Name
	annotations[v1alpha1.AnnotationProxyPod] = sourceCluster + "/" + proxy.Namespace + "/" + proxy.Name

	spec := source.Spec.DeepCopy()
	spec.SchedulerName = v1alpha1.CandidateSchedulerName
	spec.NodeName = ""
	// The target's Priority admission resolves the class there.
	spec.Priority = nil
	return &v1alpha1.PodChaperon{
		ObjectMeta: metav1.ObjectMeta{
			Name:        ChaperonName(proxy, sourceCluster),
			Namespace:   proxy.Namespace,
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: *spec,
	}, nil
}
