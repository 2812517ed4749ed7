package follow

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Kinds of objects that pods refer to by name.
const (
	KindConfigMap = "ConfigMap"
	KindSecret    = "Secret"
)

// Ref names an object of the pod's namespace that a pod spec refers to.
type Ref struct {
	Kind string // KindConfigMap or KindSecret
	Name string
}

// String is "Kind/name".
func (r Ref) String() string { return r.Kind + "/" + r.Name }

// ParseRef reads what String writes.
func ParseRef(s string) (Ref, bool) {
	kind, name, ok := strings.Cut(s, "/")
	if !ok || name == "" || (kind != KindConfigMap && kind != KindSecret) {
		return Ref{}, false
	}
	return Ref{Kind: kind, Name: name}, true
}

// References lists the config maps and secrets a pod spec refers to, each
// once, sorted: env valueFrom and envFrom of every container (init,
// regular and ephemeral), volumes (configMap, secret, and the configMap and
// secret sources of projected volumes), imagePullSecrets, and the secret
// references of the CSI, Ceph, Azure, Flex, iSCSI, ScaleIO and StorageOS
// volume sources, which kubelet also resolves in the pod's namespace.
func References(spec *corev1.PodSpec) []Ref {
	seen := map[Ref]bool{}
	add := func(kind, name string) {
		if name != "" {
			seen[Ref{Kind: kind, Name: name}] = true
		}
	}
	containers := func(env []corev1.EnvVar, envFrom []corev1.EnvFromSource) {
		for _, e := range env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				add(KindConfigMap, r.Name)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				add(KindSecret, r.Name)
			}
		}
		for _, e := range envFrom {
			if r := e.ConfigMapRef; r != nil {
				add(KindConfigMap, r.Name)
			}
			if r := e.SecretRef; r != nil {
				add(KindSecret, r.Name)
			}
		}
	}
	for i := range spec.InitContainers {
		containers(spec.InitContainers[i].Env, spec.InitContainers[i].EnvFrom)
	}
	for i := range spec.Containers {
		containers(spec.Containers[i].Env, spec.Containers[i].EnvFrom)
	}
	for i := range spec.EphemeralContainers {
		containers(spec.EphemeralContainers[i].Env, spec.EphemeralContainers[i].EnvFrom)
	}
	for _, s := range spec.ImagePullSecrets {
		add(KindSecret, s.Name)
	}
	secretRef := func(r *corev1.LocalObjectReference) {
		if r != nil {
			add(KindSecret, r.Name)
		}
	}
	for i := range spec.Volumes {
		v := &spec.Volumes[i].VolumeSource
		if v.ConfigMap != nil {
			add(KindConfigMap, v.ConfigMap.Name)
		}
		if v.Secret != nil {
			add(KindSecret, v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					add(KindConfigMap, s.ConfigMap.Name)
				}
				if s.Secret != nil {
					add(KindSecret, s.Secret.Name)
				}
			}
		}
		if v.CSI != nil {
			secretRef(v.CSI.NodePublishSecretRef)
		}
		if v.CephFS != nil {
			secretRef(v.CephFS.SecretRef)
		}
		if v.RBD != nil {
			secretRef(v.RBD.SecretRef)
		}
		if v.FlexVolume != nil {
			secretRef(v.FlexVolume.SecretRef)
		}
		if v.ISCSI != nil {
			secretRef(v.ISCSI.SecretRef)
		}
		if v.ScaleIO != nil {
			secretRef(v.ScaleIO.SecretRef)
		}
		if v.StorageOS != nil {
			secretRef(v.StorageOS.SecretRef)
		}
		if v.AzureFile != nil {
			add(KindSecret, v.AzureFile.SecretName)
		}
		if v.Cinder != nil {
			secretRef(v.Cinder.SecretRef)
		}
	}
	out := make([]Ref, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// JoinRefs is the annotation form of refs: "Kind/name,Kind/name".
func JoinRefs(refs []Ref) string {
	parts := make([]string, len(refs))
	for i, r := range refs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// SplitRefs reads what JoinRefs writes, skipping what it cannot read.
func SplitRefs(s string) []Ref {
	var out []Ref
	for _, p := range strings.Split(s, ",") {
		if r, ok := ParseRef(strings.TrimSpace(p)); ok {
			out = append(out, r)
		}
	}
	return out
}
