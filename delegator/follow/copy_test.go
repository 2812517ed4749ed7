package follow

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestMakeCopyOfService(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: "nginx", Namespace: "ns", UID: "u1", ResourceVersion: "42",
			Labels:      map[string]string{"app": "nginx"},
			Annotations: map[string]string{AnnotationGlobalService: "true", corev1.LastAppliedConfigAnnotation: "{}"},
		},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeNodePort,
			Selector:   map[string]string{"multicluster.admiralty.io/app": "nginx"},
			ClusterIP:  "10.0.0.1",
			ClusterIPs: []string{"10.0.0.1"},
			Ports:      []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80), NodePort: 30080}},
		},
	}
	u, hash, err := makeCopy(kindService, svc, "cluster1")
	if err != nil {
		t.Fatal(err)
	}
	if hash == "" {
		t.Error("no hash")
	}
	wantLabels := map[string]string{
		"app":                "nginx",
		LabelOriginCluster:   "cluster1",
		LabelOriginNamespace: "ns",
		LabelOriginName:      "nginx",
		LabelOriginUID:       "u1",
	}
	if diff := cmp.Diff(wantLabels, u.GetLabels()); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	wantAnnotations := map[string]string{AnnotationGlobalService: "true", AnnotationOrigin: "cluster1/ns/nginx"}
	if diff := cmp.Diff(wantAnnotations, u.GetAnnotations()); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	if u.GetResourceVersion() != "" || u.GetUID() != "" {
		t.Errorf("the copy keeps the source's resourceVersion %q or UID %q", u.GetResourceVersion(), u.GetUID())
	}
	spec := u.Object["spec"].(map[string]any)
	for _, f := range []string{"clusterIP", "clusterIPs"} {
		if _, ok := spec[f]; ok {
			t.Errorf("the copy keeps the source's %s", f)
		}
	}
	port := spec["ports"].([]any)[0].(map[string]any)
	if _, ok := port["nodePort"]; ok {
		t.Error("the copy keeps the source's node port")
	}
	if diff := cmp.Diff(map[string]any{"multicluster.admiralty.io/app": "nginx"}, spec["selector"]); diff != "" {
		t.Errorf("selector (-want +got):\n%s", diff)
	}
	if u.GetKind() != "Service" || u.GetAPIVersion() != "v1" {
		t.Errorf("kind %s %s", u.GetAPIVersion(), u.GetKind())
	}

	// The hash follows the content.
	svc.Spec.Ports[0].Port = 81
	_, hash2, _ := makeCopy(kindService, svc, "cluster1")
	if hash2 == hash {
		t.Error("the hash did not change with the content")
	}
}

func TestMakeCopyOfSecret(t *testing.T) {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", UID: "u"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte("{}")},
	}
	u, _, err := makeCopy(kindSecret, s, "cluster1")
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Object["type"]; got != string(corev1.SecretTypeDockerConfigJson) {
		t.Errorf("type %v", got)
	}
	if got := u.Object["data"].(map[string]any)[corev1.DockerConfigJsonKey]; got != "e30=" {
		t.Errorf("data %v, want base64 of {}", got)
	}
	if !IsCopyOf(u, "cluster1", "ns", "s") || IsCopyOf(u, "cluster2", "ns", "s") || IsCopyOf(u, "cluster1", "ns", "t") {
		t.Error("IsCopyOf does not tell the copy's origin")
	}
}

func TestFollowable(t *testing.T) {
	cases := []struct {
		name string
		obj  metav1.Object
		want bool
	}{
		{"a config map is followed", &corev1.ConfigMap{}, true},
		{"an opaque secret is followed", &corev1.Secret{Type: corev1.SecretTypeOpaque}, true},
		{"a service account token is never followed", &corev1.Secret{Type: corev1.SecretTypeServiceAccountToken}, false},
		{"a copy is never followed on", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelOriginCluster: "c"}}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Followable(tc.obj); got != tc.want {
				t.Errorf("Followable = %v, want %v", got, tc.want)
			}
		})
	}
}
