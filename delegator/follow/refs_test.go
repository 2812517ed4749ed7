package follow

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
)

func cmKey(name string) *corev1.ConfigMapKeySelector {
	return &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "k"}
}

func secretKey(name string) *corev1.SecretKeySelector {
	return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "k"}
}

func TestReferences(t *testing.T) {
	cases := []struct {
		name string
		spec corev1.PodSpec
		want []Ref
	}{
		{
			name: "a pod without references has none",
			spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}}},
			want: []Ref{},
		},
		{
			name: "env valueFrom config map and secret keys are found; field refs are not",
			spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{
				{Name: "A", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: cmKey("cm")}},
				{Name: "B", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: secretKey("s")}},
				{Name: "C", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			}}}},
			want: []Ref{{KindConfigMap, "cm"}, {KindSecret, "s"}},
		},
		{
			name: "envFrom config maps and secrets are found",
			spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", EnvFrom: []corev1.EnvFromSource{
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}},
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}}},
			}}}},
			want: []Ref{{KindConfigMap, "cm"}, {KindSecret, "s"}},
		},
		{
			name: "init and ephemeral containers count as much as regular ones",
			spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "i", Env: []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: cmKey("init-cm")}}}}},
				Containers:     []corev1.Container{{Name: "c"}},
				EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "e",
					EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "debug-s"}}}}}}},
			},
			want: []Ref{{KindConfigMap, "init-cm"}, {KindSecret, "debug-s"}},
		},
		{
			name: "config map, secret and projected volumes are found",
			spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}, Volumes: []corev1.Volume{
				{Name: "a", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}},
				{Name: "b", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}},
				{Name: "c", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "p-cm"}}},
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "p-s"}}},
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
				}}}},
				{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			}},
			want: []Ref{{KindConfigMap, "cm"}, {KindConfigMap, "p-cm"}, {KindSecret, "p-s"}, {KindSecret, "s"}},
		},
		{
			name: "image pull secrets and the secrets of volume plugins are found",
			spec: corev1.PodSpec{
				Containers:       []corev1.Container{{Name: "c"}},
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry"}},
				Volumes: []corev1.Volume{
					{Name: "a", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "d", NodePublishSecretRef: &corev1.LocalObjectReference{Name: "csi"}}}},
					{Name: "b", VolumeSource: corev1.VolumeSource{AzureFile: &corev1.AzureFileVolumeSource{SecretName: "azure", ShareName: "x"}}},
				},
			},
			want: []Ref{{KindSecret, "azure"}, {KindSecret, "csi"}, {KindSecret, "registry"}},
		},
		{
			name: "an object referred to many times is listed once",
			spec: corev1.PodSpec{
				Containers: []corev1.Container{
					{Name: "a", Env: []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: secretKey("s")}}}},
					{Name: "b", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}}}}},
				},
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "s"}},
				Volumes:          []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}}},
			},
			want: []Ref{{KindSecret, "s"}},
		},
		{
			name: "a config map and a secret of the same name are two references",
			spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{
				{Name: "A", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: cmKey("x")}},
				{Name: "B", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: secretKey("x")}},
			}}}},
			want: []Ref{{KindConfigMap, "x"}, {KindSecret, "x"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, References(&tc.spec)); diff != "" {
				t.Errorf("References (-want +got):\n%s", diff)
			}
			// The delegator's caches of its chaperons in targets keep
			// only what References reads.
			obj, err := app.TrimSourceChaperon(&v1alpha1.PodChaperon{Spec: *tc.spec.DeepCopy()})
			if err != nil {
				t.Fatal(err)
			}
			trimmed := obj.(*v1alpha1.PodChaperon).Spec
			if diff := cmp.Diff(tc.want, References(&trimmed)); diff != "" {
				t.Errorf("References of the trimmed spec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRefsAnnotationRoundTrip(t *testing.T) {
	refs := []Ref{{KindConfigMap, "a"}, {KindSecret, "b.c"}}
	got := SplitRefs(JoinRefs(refs))
	if diff := cmp.Diff(refs, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if got := SplitRefs("Pod/x,ConfigMap/,nonsense,Secret/s"); !cmp.Equal(got, []Ref{{KindSecret, "s"}}) {
		t.Errorf("SplitRefs kept unreadable entries: %v", got)
	}
	if got := SplitRefs(""); len(got) != 0 {
		t.Errorf("SplitRefs(\"\") = %v, want none", got)
	}
}
