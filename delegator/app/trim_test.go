package app

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// A container with what the caches never read (image, command, resources,
// probes) and what they do (name, env).
func fullContainer() corev1.Container {
	return corev1.Container{
		Name:      "app",
		Image:     "nginx",
		Command:   []string{"nginx", "-g", "daemon off;"},
		Env:       []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "k"}}}},
		EnvFrom:   []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}}}},
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: "/healthz"},
		}},
	}
}

func TestTrimProxyKeepsWhatTheFeedbackAndServicesRead(t *testing.T) {
	now := metav1.Now()
	grace := int64(30)
	meta := metav1.ObjectMeta{
		Name: "p", Namespace: "ns", UID: "u", ResourceVersion: "7",
		Labels:                     map[string]string{v1alpha1.LabelIsProxy: "true", "app": "web"},
		Annotations:                map[string]string{"team": "a"},
		DeletionTimestamp:          &now,
		DeletionGracePeriodSeconds: &grace,
	}
	status := corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", QOSClass: corev1.PodQOSBurstable}
	full := &corev1.Pod{ObjectMeta: *meta.DeepCopy(), Spec: corev1.PodSpec{NodeName: "admiralty-c2", Containers: []corev1.Container{fullContainer()}}, Status: status}
	full.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	full.Annotations[v1alpha1.AnnotationSourcePodManifest] = `{"kind":"Pod"}`
	full.Annotations[corev1.LastAppliedConfigAnnotation] = `{"kind":"Pod"}`

	obj, err := TrimProxy(full)
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.Pod{ObjectMeta: meta, Spec: corev1.PodSpec{NodeName: "admiralty-c2"}, Status: status}
	if diff := cmp.Diff(want, obj); diff != "" {
		t.Errorf("TrimProxy (-want +got):\n%s", diff)
	}
	if got, err := TrimProxy("not a pod"); err != nil || got != "not a pod" {
		t.Errorf("TrimProxy of another object = %v, %v; want it unchanged", got, err)
	}
}

func TestTrimSourceChaperonKeepsMetadataStatusAndReferences(t *testing.T) {
	meta := metav1.ObjectMeta{Name: "ch", Namespace: "ns", UID: "u", Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"c": "d"}}
	status := v1alpha1.PodChaperonStatus{NodeName: "node-1", PodStatus: corev1.PodStatus{Phase: corev1.PodRunning}}
	volumes := []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm2"}}}}}
	pull := []corev1.LocalObjectReference{{Name: "registry"}}
	spread := []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "zone", WhenUnsatisfiable: corev1.DoNotSchedule}}
	c := fullContainer()
	full := &v1alpha1.PodChaperon{ObjectMeta: *meta.DeepCopy(), Status: status, Spec: corev1.PodSpec{
		InitContainers:            []corev1.Container{c},
		Containers:                []corev1.Container{c, c},
		EphemeralContainers:       []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox", Env: c.Env}}},
		Volumes:                   volumes,
		ImagePullSecrets:          pull,
		TopologySpreadConstraints: spread,
		NodeSelector:              map[string]string{"disk": "ssd"},
		SchedulerName:             "default-scheduler",
		Tolerations:               []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}},
	}}
	full.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "scheduler"}}

	obj, err := TrimSourceChaperon(full)
	if err != nil {
		t.Fatal(err)
	}
	envOnly := corev1.Container{Name: c.Name, Env: c.Env, EnvFrom: c.EnvFrom}
	want := &v1alpha1.PodChaperon{ObjectMeta: meta, Status: status, Spec: corev1.PodSpec{
		InitContainers:            []corev1.Container{envOnly},
		Containers:                []corev1.Container{envOnly, envOnly},
		EphemeralContainers:       []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Env: c.Env}}},
		Volumes:                   volumes,
		ImagePullSecrets:          pull,
		TopologySpreadConstraints: spread,
	}}
	if diff := cmp.Diff(want, obj); diff != "" {
		t.Errorf("TrimSourceChaperon (-want +got):\n%s", diff)
	}
}
