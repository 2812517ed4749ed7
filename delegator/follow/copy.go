package follow

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/names"
)

// Origin of a copy: labels (for selection and exact cleanup) and
// annotations (the unfitted values, for people).
const (
	// LabelOriginCluster on a copy is the source cluster's name (fitted to
	// a label value); every copy has it, so that the delegators select
	// copies, and only copies, by it.
	LabelOriginCluster = v1alpha1.GroupName + "/origin-cluster"
	// LabelOriginNamespace, LabelOriginName and LabelOriginUID name the
	// source object.
	LabelOriginNamespace = v1alpha1.GroupName + "/origin-namespace"
	LabelOriginName      = v1alpha1.GroupName + "/origin-name"
	LabelOriginUID       = v1alpha1.GroupName + "/origin-uid"
	// AnnotationOrigin is "cluster/namespace/name" of the source object,
	// unfitted.
	AnnotationOrigin = v1alpha1.GroupName + "/origin"

	// AnnotationFollowed on a PodChaperon, written by the source once it
	// has copied the chaperon's dependencies to the target, lists those it
	// copied ("ConfigMap/a,Secret/b"): the ones the source has. The target
	// makes the delegate only then, and once each listed copy is there.
	AnnotationFollowed = v1alpha1.GroupName + "/followed"

	// AnnotationGlobalService marks a Service that Cilium cluster mesh
	// merges across clusters; the delegator replicates such services to
	// every target.
	AnnotationGlobalService = "io.cilium/global-service"
)

// kind is what differs between the followed kinds: one implementation
// copies, syncs and deletes them all.
type kind struct {
	name string
	gvr  schema.GroupVersionResource
	// readable: a source may read this kind in its targets (services and
	// ingresses); config maps and secrets it may only write, so the
	// target's delegator deletes their copies.
	readable bool
	// scrub removes from a copy's content what belongs to the source
	// cluster (content is the object's top-level fields but metadata).
	scrub func(content map[string]any)
}

var (
	kindConfigMap = &kind{name: KindConfigMap, gvr: corev1.SchemeGroupVersion.WithResource("configmaps")}
	kindSecret    = &kind{name: KindSecret, gvr: corev1.SchemeGroupVersion.WithResource("secrets")}
	kindService   = &kind{name: "Service", gvr: corev1.SchemeGroupVersion.WithResource("services"), readable: true, scrub: scrubService}
	kindIngress   = &kind{name: "Ingress", gvr: networkingv1.SchemeGroupVersion.WithResource("ingresses"), readable: true}

	kinds = []*kind{kindConfigMap, kindSecret, kindService, kindIngress}
)

func kindNamed(name string) *kind {
	for _, k := range kinds {
		if k.name == name {
			return k
		}
	}
	return nil
}

// scrubService drops what the target allocates itself: cluster IPs, node
// ports, the health check port and IP families.
func scrubService(content map[string]any) {
	spec, ok := content["spec"].(map[string]any)
	if !ok {
		return
	}
	for _, f := range []string{"clusterIP", "clusterIPs", "healthCheckNodePort", "ipFamilies", "ipFamilyPolicy", "loadBalancerIP"} {
		delete(spec, f)
	}
	if ports, ok := spec["ports"].([]any); ok {
		for _, p := range ports {
			if m, ok := p.(map[string]any); ok {
				delete(m, "nodePort")
			}
		}
	}
}

// IsCopy tells whether obj is a copy that a delegator made.
func IsCopy(obj metav1.Object) bool {
	_, ok := obj.GetLabels()[LabelOriginCluster]
	return ok
}

// IsCopyOf tells whether obj is the copy of object namespace/name of the
// source cluster.
func IsCopyOf(obj metav1.Object, cluster, namespace, name string) bool {
	l := obj.GetLabels()
	return l[LabelOriginCluster] == names.Fit(cluster, names.MaxLabel) &&
		l[LabelOriginNamespace] == namespace && l[LabelOriginName] == names.Fit(name, names.MaxLabel)
}

// Followable tells whether a source object may be copied: never copies
// themselves (a cluster that is both source and target would send them
// on), nor service account tokens (a delegate never gets the source's
// credentials).
func Followable(obj metav1.Object) bool {
	if IsCopy(obj) {
		return false
	}
	if s, ok := obj.(*corev1.Secret); ok && s.Type == corev1.SecretTypeServiceAccountToken {
		return false
	}
	return true
}

// makeCopy builds the copy of src for a target: the same name, namespace,
// content, labels and annotations, plus the origin labels; and a hash of it
// all, to skip writes that would change nothing.
func makeCopy(k *kind, src metav1.Object, sourceCluster string) (*unstructured.Unstructured, string, error) {
	robj, ok := src.(runtime.Object)
	if !ok {
		return nil, "", fmt.Errorf("%T is not an API object", src)
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(robj)
	if err != nil {
		return nil, "", err
	}
	delete(content, "metadata")
	delete(content, "status")
	if k.scrub != nil {
		k.scrub(content)
	}
	u := &unstructured.Unstructured{Object: content}
	u.SetAPIVersion(k.gvr.GroupVersion().String())
	u.SetKind(k.name)
	u.SetNamespace(src.GetNamespace())
	u.SetName(src.GetName())
	labels := map[string]string{}
	for key, v := range src.GetLabels() {
		labels[key] = v
	}
	labels[LabelOriginCluster] = names.Fit(sourceCluster, names.MaxLabel)
	labels[LabelOriginNamespace] = src.GetNamespace()
	labels[LabelOriginName] = names.Fit(src.GetName(), names.MaxLabel)
	labels[LabelOriginUID] = string(src.GetUID())
	u.SetLabels(labels)
	annotations := map[string]string{}
	for key, v := range src.GetAnnotations() {
		if key == corev1.LastAppliedConfigAnnotation {
			continue
		}
		annotations[key] = v
	}
	annotations[AnnotationOrigin] = sourceCluster + "/" + src.GetNamespace() + "/" + src.GetName()
	u.SetAnnotations(annotations)
	data, err := json.Marshal(u.Object)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(data)
	return u, hex.EncodeToString(sum[:8]), nil
}
