package proxypod

import (
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

func enabledNamespace(annotations map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        "ns",
		Labels:      map[string]string{v1alpha1.LabelNamespaceEnabled: EnabledValue},
		Annotations: annotations,
	}}
}

func podWith(annotations, labels map[string]string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Annotations: maps.Clone(annotations), Labels: maps.Clone(labels)},
		Spec: corev1.PodSpec{
			SchedulerName: corev1.DefaultSchedulerName,
			Containers:    []corev1.Container{{Name: "c", Image: "nginx"}},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

var elect = map[string]string{v1alpha1.AnnotationElect: ""}

func TestElected(t *testing.T) {
	electAll := map[string]string{v1alpha1.AnnotationElect: ""}
	tests := []struct {
		name      string
		pod       *corev1.Pod
		namespace *corev1.Namespace
		want      bool
	}{
		{"A pod with the elect annotation in an enabled namespace is elected.",
			podWith(elect, nil), enabledNamespace(nil), true},
		{"The elect annotation counts whatever its value.",
			podWith(map[string]string{v1alpha1.AnnotationElect: "false"}, nil), enabledNamespace(nil), true},
		{"A pod scheduled by admiralty-proxy is elected without the annotation.",
			podWith(nil, nil, func(p *corev1.Pod) { p.Spec.SchedulerName = v1alpha1.ProxySchedulerName }), enabledNamespace(nil), true},
		{"A pod without the annotation is not elected.",
			podWith(nil, nil), enabledNamespace(nil), false},
		{"A pod with the annotation in a namespace without the label is not elected.",
			podWith(elect, nil), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}, false},
		{"A namespace label with another value than enabled does not opt in.",
			podWith(elect, nil), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Labels: map[string]string{v1alpha1.LabelNamespaceEnabled: "true"}}}, false},
		{"An unknown namespace elects nothing.",
			podWith(elect, nil), nil, false},
		{"A namespace object that is not the pod's elects nothing.",
			podWith(elect, nil, func(p *corev1.Pod) { p.Namespace = "other" }), enabledNamespace(nil), false},
		{"A proxy is not elected again.",
			podWith(elect, map[string]string{v1alpha1.LabelIsProxy: "true"}), enabledNamespace(nil), false},
		{"A delegate, labeled with its proxy's UID, is not elected even if it kept the annotation.",
			podWith(elect, map[string]string{v1alpha1.LabelParentUID: "u"}), enabledNamespace(electAll), false},
		{"A candidate, scheduled by admiralty-candidate, is not elected.",
			podWith(nil, nil, func(p *corev1.Pod) { p.Spec.SchedulerName = v1alpha1.CandidateSchedulerName }), enabledNamespace(electAll), false},
		{"A namespace annotated elect elects a pod without annotations.",
			podWith(nil, nil), enabledNamespace(electAll), true},
		{"Namespace-wide election needs the namespace label too.",
			podWith(nil, nil), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Annotations: electAll}}, false},
		{"A pod opts out of namespace-wide election with no-elect.",
			podWith(map[string]string{AnnotationNoElect: ""}, nil), enabledNamespace(electAll), false},
		{"No-elect does not override the pod's own elect annotation.",
			podWith(map[string]string{AnnotationNoElect: "", v1alpha1.AnnotationElect: ""}, nil), enabledNamespace(electAll), true},
		{"Namespace-wide election leaves a pod bound to a node alone.",
			podWith(nil, nil, func(p *corev1.Pod) { p.Spec.NodeName = "n" }), enabledNamespace(electAll), false},
		{"Namespace-wide election leaves mirror pods alone.",
			podWith(map[string]string{mirrorPodAnnotation: "x"}, nil), enabledNamespace(electAll), false},
		{"Namespace-wide election leaves DaemonSet pods alone.",
			podWith(nil, nil, func(p *corev1.Pod) {
				p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "ds", UID: "u", Controller: ptr.To(true)}}
			}), enabledNamespace(electAll), false},
		{"Namespace-wide election elects ReplicaSet pods.",
			podWith(nil, nil, func(p *corev1.Pod) {
				p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "u", Controller: ptr.To(true)}}
			}), enabledNamespace(electAll), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Elected(tt.pod, tt.namespace); got != tt.want {
				t.Errorf("Elected() = %v, want %v", got, tt.want)
			}
		})
	}
}

// admitted is a pod as the webhook receives it from a Deployment: named
// later (generateName), defaulted, with the token volume and the priority
// that the built-in admission plugins added.
func admitted() *corev1.Pod {
	tokenMount := corev1.VolumeMount{Name: "kube-api-access-abcde", ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "web-6d4cf56db6-",
			Namespace:    "ns",
			Labels:       map[string]string{"app": "web"},
			Annotations:  map[string]string{v1alpha1.AnnotationElect: ""},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-6d4cf56db6", UID: "rs-uid", Controller: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{
			SchedulerName:     corev1.DefaultSchedulerName,
			PriorityClassName: "high",
			Priority:          ptr.To[int32](1000),
			SchedulingGates:   []corev1.PodSchedulingGate{{Name: "example.com/quota"}},
			NodeSelector:      map[string]string{"topology.kubernetes.io/region": "eu"},
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "disk", Operator: corev1.NodeSelectorOpIn, Values: []string{"ssd"}}},
				}}},
			}},
			TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
				MaxSkew: 1, TopologyKey: "topology.kubernetes.io/region", WhenUnsatisfiable: corev1.DoNotSchedule,
			}},
			Tolerations: []corev1.Toleration{{
				Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300),
			}},
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox", VolumeMounts: []corev1.VolumeMount{tokenMount}}},
			Containers: []corev1.Container{{
				Name:  "web",
				Image: "nginx",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("100m"),
				}},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}, tokenMount},
			}},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{
						{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
						{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
					},
				}}},
			},
		},
	}
}

func TestMakeProxy(t *testing.T) {
	pod := admitted()
	if err := MakeProxy(pod); err != nil {
		t.Fatal(err)
	}

	wantOriginal := admitted()
	wantOriginal.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	wantOriginal.OwnerReferences = nil
	wantOriginal.Spec.Priority = nil
	wantOriginal.Spec.SchedulingGates = nil
	wantOriginal.Spec.Volumes = wantOriginal.Spec.Volumes[:1]
	wantOriginal.Spec.InitContainers[0].VolumeMounts = nil
	wantOriginal.Spec.Containers[0].VolumeMounts = wantOriginal.Spec.Containers[0].VolumeMounts[:1]
	gotOriginal, err := SourcePod(pod)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantOriginal, gotOriginal); diff != "" {
		t.Errorf("saved original (-want +got):\n%s", diff)
	}

	wantProxy := admitted()
	wantProxy.Annotations[v1alpha1.AnnotationSourcePodManifest] = pod.Annotations[v1alpha1.AnnotationSourcePodManifest]
	wantProxy.Labels[v1alpha1.LabelIsProxy] = "true"
	wantProxy.Spec.SchedulerName = v1alpha1.ProxySchedulerName
	wantProxy.Spec.NodeSelector = map[string]string{v1alpha1.LabelVirtualKubeletProvider: v1alpha1.ProviderName}
	wantProxy.Spec.Affinity = nil
	wantProxy.Spec.TopologySpreadConstraints = nil
	// The admission's 300 s tolerations of NotReady and unreachable nodes
	// become forever: the delegator's failover decides (they stay in the
	// original).
	wantProxy.Spec.Tolerations = []corev1.Toleration{
		{Key: "virtual-kubelet.io/provider", Operator: corev1.TolerationOpEqual, Value: "admiralty", Effect: corev1.TaintEffectNoSchedule},
		{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	}
	if diff := cmp.Diff(wantProxy, pod); diff != "" {
		t.Errorf("proxy (-want +got):\n%s", diff)
	}

	again := pod.DeepCopy()
	if err := MakeProxy(again); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pod, again); diff != "" {
		t.Errorf("MakeProxy of a proxy changed it (-want +got):\n%s", diff)
	}
}

func TestMakeProxyEdgeCases(t *testing.T) {
	tests := []struct {
		name         string
		pod          *corev1.Pod
		wantErr      string
		wantOriginal func(*corev1.Pod)
		wantProxy    func(*corev1.Pod)
	}{
		{
			name: "A pod that sets schedulerName admiralty-proxy keeps the default scheduler in its original.",
			pod:  podWith(nil, nil, func(p *corev1.Pod) { p.Spec.SchedulerName = v1alpha1.ProxySchedulerName }),
			wantOriginal: func(o *corev1.Pod) {
				o.Spec.SchedulerName = corev1.DefaultSchedulerName
			},
		},
		{
			name: "A pod that already tolerates virtual nodes does not get the toleration twice.",
			pod: podWith(elect, nil, func(p *corev1.Pod) {
				p.Spec.Tolerations = []corev1.Toleration{{Key: v1alpha1.LabelVirtualKubeletProvider, Operator: corev1.TolerationOpExists}}
			}),
			wantProxy: func(p *corev1.Pod) {
				p.Spec.Tolerations = append([]corev1.Toleration{{Key: v1alpha1.LabelVirtualKubeletProvider, Operator: corev1.TolerationOpExists}}, OutageTolerations...)
			},
		},
		{
			name: "A manifest annotation the user forged on a new pod is replaced, not nested in the original.",
			pod:  podWith(map[string]string{v1alpha1.AnnotationElect: "", v1alpha1.AnnotationSourcePodManifest: `{"spec":{"nodeName":"x"}}`}, nil),
			wantOriginal: func(o *corev1.Pod) {
				o.Annotations = map[string]string{v1alpha1.AnnotationElect: ""}
			},
		},
		{
			name: "A user volume named like the token volume but not projecting a token is kept.",
			pod: podWith(elect, nil, func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: "kube-api-access-mine", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "kube-api-access-mine", MountPath: "/x"}}
			}),
			wantOriginal: func(o *corev1.Pod) {},
		},
		{
			name:    "A pod bound to a node cannot become a proxy and is left unchanged.",
			pod:     podWith(elect, nil, func(p *corev1.Pod) { p.Spec.NodeName = "node-1" }),
			wantErr: `pod is bound to node "node-1"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.pod.DeepCopy()
			err := MakeProxy(tt.pod)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("MakeProxy() error = %v, want one containing %q", err, tt.wantErr)
				}
				if diff := cmp.Diff(before, tt.pod); diff != "" {
					t.Errorf("a refused pod was changed (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantOriginal != nil {
				want := before.DeepCopy()
				want.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
				tt.wantOriginal(want)
				got, err := SourcePod(tt.pod)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("saved original (-want +got):\n%s", diff)
				}
			}
			if tt.wantProxy != nil {
				want := before.DeepCopy()
				tt.wantProxy(want)
				if diff := cmp.Diff(want.Spec.Tolerations, tt.pod.Spec.Tolerations); diff != "" {
					t.Errorf("proxy tolerations (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// proxyWithManifest is a proxy in namespace ns whose annotation is data.
func proxyWithManifest(data string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name:        "p",
		Namespace:   "ns",
		Labels:      map[string]string{v1alpha1.LabelIsProxy: "true"},
		Annotations: map[string]string{v1alpha1.AnnotationSourcePodManifest: data},
	}}
}

func manifest(t *testing.T, mutate func(*corev1.Pod)) string {
	t.Helper()
	o := podWith(elect, nil)
	o.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	mutate(o)
	data, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestSourcePod(t *testing.T) {
	tests := []struct {
		name    string
		proxy   *corev1.Pod
		wantErr error
		errText string
		check   func(t *testing.T, original *corev1.Pod)
	}{
		{name: "A pod without the annotation is not a proxy.",
			proxy: podWith(nil, nil), wantErr: ErrNotProxy},
		{name: "No pod is not a proxy.",
			proxy: nil, wantErr: ErrNotProxy},
		{name: "An annotation that is not JSON is refused.",
			proxy: proxyWithManifest(`{"metadata":`), wantErr: ErrInvalidManifest},
		{name: "An annotation that holds a JSON string is refused.",
			proxy: proxyWithManifest(`"pod"`), wantErr: ErrInvalidManifest},
		{name: "An empty object is refused: it has no namespace and no containers.",
			proxy: proxyWithManifest(`{}`), wantErr: ErrInvalidManifest, errText: "namespace"},
		{name: "Another kind than Pod is refused.",
			proxy:   proxyWithManifest(manifest(t, func(o *corev1.Pod) { o.Kind = "Secret" })),
			wantErr: ErrInvalidManifest, errText: "not a v1 Pod"},
		{name: "An original in another namespace than the proxy's is refused.",
			proxy:   proxyWithManifest(manifest(t, func(o *corev1.Pod) { o.Namespace = "kube-system" })),
			wantErr: ErrInvalidManifest, errText: `namespace "kube-system", but the proxy is in "ns"`},
		{name: "An original with another name than the proxy's is refused.",
			proxy:   proxyWithManifest(manifest(t, func(o *corev1.Pod) { o.Name = "other" })),
			wantErr: ErrInvalidManifest, errText: `name "other"`},
		{name: "An original without containers is refused.",
			proxy:   proxyWithManifest(manifest(t, func(o *corev1.Pod) { o.Spec.Containers = nil })),
			wantErr: ErrInvalidManifest, errText: "no containers"},
		{name: "An original bound to a node is refused.",
			proxy:   proxyWithManifest(manifest(t, func(o *corev1.Pod) { o.Spec.NodeName = "n" })),
			wantErr: ErrInvalidManifest, errText: "spec.nodeName"},
		{name: "An original scheduled by the proxy scheduler is refused.",
			proxy:   proxyWithManifest(manifest(t, func(o *corev1.Pod) { o.Spec.SchedulerName = v1alpha1.ProxySchedulerName })),
			wantErr: ErrInvalidManifest, errText: "spec.schedulerName"},
		{name: "An original labeled as a proxy is refused.",
			proxy:   proxyWithManifest(manifest(t, func(o *corev1.Pod) { o.Labels = map[string]string{v1alpha1.LabelIsProxy: "true"} })),
			wantErr: ErrInvalidManifest, errText: "would be a proxy"},
		{name: "An original nesting a manifest annotation is refused.",
			proxy: proxyWithManifest(manifest(t, func(o *corev1.Pod) {
				o.Annotations = map[string]string{v1alpha1.AnnotationSourcePodManifest: "{}"}
			})),
			wantErr: ErrInvalidManifest, errText: "nests"},
		{name: "A repeated field is refused, since parsers disagree on which one wins.",
			proxy:   proxyWithManifest(`{"metadata":{"namespace":"ns"},"spec":{"nodeName":"","containers":[{"name":"c"}],"nodeName":"n"}}`),
			wantErr: ErrInvalidManifest, errText: "duplicate field"},
		{name: "Field names are case-sensitive, as the API server's: NodeName is not nodeName.",
			proxy: proxyWithManifest(`{"metadata":{"namespace":"ns"},"spec":{"NodeName":"n","containers":[{"name":"c"}]}}`),
			check: func(t *testing.T, o *corev1.Pod) {
				if o.Spec.NodeName != "" {
					t.Errorf("nodeName = %q, want it empty", o.Spec.NodeName)
				}
			}},
		{name: "Unknown fields are ignored, so a newer webhook's manifests stay readable.",
			proxy: proxyWithManifest(`{"apiVersion":"v1","kind":"Pod","metadata":{"namespace":"ns"},"spec":{"futureField":1,"containers":[{"name":"c"}]}}`),
			check: func(t *testing.T, o *corev1.Pod) {
				if diff := cmp.Diff([]corev1.Container{{Name: "c"}}, o.Spec.Containers); diff != "" {
					t.Errorf("containers (-want +got):\n%s", diff)
				}
			}},
		{name: "An original named by generateName only, as a controller's pod, is accepted.",
			proxy: proxyWithManifest(manifest(t, func(o *corev1.Pod) { o.Name, o.GenerateName = "", "web-" })),
			check: func(t *testing.T, o *corev1.Pod) {
				if o.GenerateName != "web-" {
					t.Errorf("generateName = %q, want web-", o.GenerateName)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SourcePod(tt.proxy)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("SourcePod() error = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errText) {
					t.Errorf("SourcePod() error = %q, want it to say %q", err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("SourcePod() error = %v", err)
			}
			tt.check(t, got)
		})
	}
}
