package proxy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

func TestTrimPodDropsTheManifestOfBoundProxiesOnly(t *testing.T) {
	pod := func(proxy bool, node string) *v1.Pod {
		p := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name:          "p",
				Labels:        map[string]string{"app": "web"},
				Annotations:   map[string]string{v1alpha1.AnnotationSourcePodManifest: `{"kind":"Pod"}`, "team": "a"},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			},
			Spec: v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c"}}},
		}
		if proxy {
			p.Labels[v1alpha1.LabelIsProxy] = "true"
		}
		return p
	}
	for _, tc := range []struct {
		name         string
		pod          *v1.Pod
		keepManifest bool
	}{
		{"a proxy waiting to be scheduled keeps it: PreFilter reads it", pod(true, ""), true},
		{"a bound proxy loses it", pod(true, "admiralty-c2"), false},
		{"an ordinary pod with the same annotation keeps it", pod(false, "node-1"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.pod.DeepCopy()
			want.ManagedFields = nil
			if !tc.keepManifest {
				delete(want.Annotations, v1alpha1.AnnotationSourcePodManifest)
			}
			got, err := trimPod(tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("trimPod (-want +got):\n%s", diff)
			}
		})
	}
}

// A bound pod keeps what plugins read of pods already on a node, and only
// that; a pod waiting to be scheduled is kept whole.
func TestTrimPodKeepsWhatPluginsReadOfBoundPods(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	requests := v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m")}}
	pvc := v1.Volume{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}
	csi := v1.Volume{Name: "inline", VolumeSource: v1.VolumeSource{CSI: &v1.CSIVolumeSource{Driver: "csi.example.com"}}}
	pod := func(node string) *v1.Pod {
		return &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{"app": "web"}},
			Spec: v1.PodSpec{
				NodeName: node,
				InitContainers: []v1.Container{{
					Name: "sidecar", Image: "envoy", RestartPolicy: &always, Resources: requests,
					Env: []v1.EnvVar{{Name: "A", Value: "b"}},
				}},
				Containers: []v1.Container{{
					Name: "web", Image: "nginx", Command: []string{"nginx"}, Resources: requests,
					Ports:         []v1.ContainerPort{{ContainerPort: 80, HostPort: 8080}},
					ResizePolicy:  []v1.ContainerResizePolicy{{ResourceName: v1.ResourceCPU, RestartPolicy: v1.NotRequired}},
					VolumeMounts:  []v1.VolumeMount{{Name: "kube-api-access", MountPath: "/var/run/secrets"}},
					LivenessProbe: &v1.Probe{InitialDelaySeconds: 3},
				}},
				EphemeralContainers: []v1.EphemeralContainer{{EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "debug"}}},
				Volumes: []v1.Volume{
					{Name: "kube-api-access", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{}}},
					pvc,
					{Name: "config", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{}}},
					{Name: "secret", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "s"}}},
					{Name: "labels", VolumeSource: v1.VolumeSource{DownwardAPI: &v1.DownwardAPIVolumeSource{}}},
					csi,
				},
				Affinity: &v1.Affinity{PodAntiAffinity: &v1.PodAntiAffinity{}},
				Priority: ptr.To[int32](10),
			},
			Status: v1.PodStatus{Phase: v1.PodRunning, ContainerStatuses: []v1.ContainerStatus{{Name: "web", AllocatedResources: requests.Requests}}},
		}
	}
	unbound := pod("")
	if got, _ := trimPod(unbound.DeepCopy()); !cmp.Equal(unbound, got) {
		t.Errorf("a pod waiting to be scheduled was trimmed:\n%s", cmp.Diff(unbound, got))
	}
	want := pod("node-1")
	want.Spec.InitContainers = []v1.Container{{Name: "sidecar", RestartPolicy: &always, Resources: requests}}
	want.Spec.Containers = []v1.Container{{
		Name: "web", Resources: requests,
		Ports:        []v1.ContainerPort{{ContainerPort: 80, HostPort: 8080}},
		ResizePolicy: []v1.ContainerResizePolicy{{ResourceName: v1.ResourceCPU, RestartPolicy: v1.NotRequired}},
	}}
	want.Spec.EphemeralContainers = nil
	want.Spec.Volumes = []v1.Volume{pvc, csi}
	got, err := trimPod(pod("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("trimPod of a bound pod (-want +got):\n%s", diff)
	}
	// What the resource accounting reads gives the same requests.
	if diff := cmp.Diff(podRequests(pod("node-1")), podRequests(got.(*v1.Pod))); diff != "" {
		t.Errorf("requests of the trimmed pod differ (-whole +trimmed):\n%s", diff)
	}
}
