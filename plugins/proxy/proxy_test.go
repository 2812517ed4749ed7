package proxy

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/proxypod"
	"admiralty.io/multicluster-scheduler/targets"
)

func TestFilterExcludesNodesThatAreNotVirtual(t *testing.T) {
	cases := []struct {
		name   string
		labels map[string]string
	}{
		{name: "a real node is excluded for good", labels: map[string]string{"topology.kubernetes.io/region": "eu"}},
		{name: "a virtual node of another provider is excluded", labels: map[string]string{"virtual-kubelet.io/provider": "aci"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ni := framework.NewNodeInfo()
			ni.SetNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: tc.labels}})
			got := (&Plugin{}).Filter(context.Background(), framework.NewCycleState(), &v1.Pod{}, ni)
			if got.Code() != fwk.UnschedulableAndUnresolvable || got.Message() != ErrReasonNotVirtual {
				t.Errorf("Filter() = %v, want UnschedulableAndUnresolvable %q", got, ErrReasonNotVirtual)
			}
		})
	}
}

func TestChaperonNameIsStableAndDistinct(t *testing.T) {
	a := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nginx-1", UID: "uid-a"}}
	b := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nginx-1", UID: "uid-b"}}
	if ChaperonName(a, "cluster1") != ChaperonName(a, "cluster1") {
		t.Error("the same proxy gets two names")
	}
	for _, other := range []string{ChaperonName(b, "cluster1"), ChaperonName(a, "cluster2")} {
		if other == ChaperonName(a, "cluster1") {
			t.Errorf("two proxies share the name %q", other)
		}
	}
	long := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("p", 250), UID: "u"}}
	if n := ChaperonName(long, "cluster1"); len(n) > 63 {
		t.Errorf("ChaperonName() = %d characters, want at most 63", len(n))
	}
}

func TestMakeChaperonCarriesTheOriginalPod(t *testing.T) {
	prio := int32(1000)
	source := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Labels:      map[string]string{"app": "nginx"},
			Annotations: map[string]string{v1alpha1.AnnotationElect: "", "note": "kept"},
		},
		Spec: v1.PodSpec{
			SchedulerName: "default-scheduler", Priority: &prio, PriorityClassName: "high",
			NodeSelector: map[string]string{"topology.kubernetes.io/region": "eu"},
			Containers:   []v1.Container{{Name: "nginx", Image: "nginx"}},
		},
	}
	proxy := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nginx-1", Namespace: "default", UID: "uid-a"}}
	got, err := proxypod.MakeChaperon(source, proxy, "cluster1")
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{
		"multicluster.admiralty.io/app": "nginx",
		v1alpha1.LabelParentClusterName: "cluster1",
		v1alpha1.LabelParentUID:         "uid-a",
	}
	if diff := cmp.Diff(wantLabels, got.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	wantAnnotations := map[string]string{
		"note":                             "kept",
		v1alpha1.AnnotationParentNamespace: "default",
		v1alpha1.AnnotationParentName:      "nginx-1",
		v1alpha1.AnnotationProxyPod:        "cluster1/default/nginx-1",
	}
	if diff := cmp.Diff(wantAnnotations, got.Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	wantSpec := source.Spec.DeepCopy()
	wantSpec.SchedulerName = v1alpha1.CandidateSchedulerName
	wantSpec.Priority = nil
	if diff := cmp.Diff(*wantSpec, got.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	if got.Namespace != "default" {
		t.Errorf("namespace = %q, want the proxy's", got.Namespace)
	}
}

func TestShortReason(t *testing.T) {
	got := shortReason("0/3 nodes are available: 3 Insufficient cpu.")
	if want := "0/3 nodes: 3 Insufficient cpu"; got != want {
		t.Errorf("shortReason() = %q, want %q", got, want)
	}
}

func TestScorePolicies(t *testing.T) {
	summary := &v1alpha1.ClusterSummary{Allocatable: v1.ResourceList{
		v1.ResourceCPU: resource.MustParse("10"), v1.ResourceMemory: resource.MustParse("10Gi"),
	}}
	roomy := v1.ResourceList{v1.ResourceCPU: resource.MustParse("8"), v1.ResourceMemory: resource.MustParse("8Gi")}
	tight := v1.ResourceList{v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("2Gi")}
	none := v1.ResourceList{}
	cases := []struct {
		name      string
		args      Args
		wantRoomy bool
	}{
		{name: "LeastAllocated prefers the target with more room", args: Args{ScoringPolicy: PolicyLeastAllocated}, wantRoomy: true},
		{name: "MostAllocated prefers the fuller target", args: Args{ScoringPolicy: PolicyMostAllocated}, wantRoomy: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &Plugin{args: tc.args}
			r, s := p.score(summary, roomy, none), p.score(summary, tight, none)
			if (r > s) != tc.wantRoomy {
				t.Errorf("score(roomy) = %d, score(tight) = %d", r, s)
			}
		})
	}
	p := &Plugin{args: Args{ScoringPolicy: PolicyLeastAllocated}}
	if got := p.score(summary, roomy, none); got != 80 {
		t.Errorf("score(roomy) = %d, want 80", got)
	}
}

func TestArgsValidation(t *testing.T) {
	cases := []struct {
		name    string
		args    Args
		wantErr string
	}{
		{name: "a cluster name is required", args: Args{}, wantErr: "clusterName is required"},
		{name: "an unknown scoring policy is refused", args: Args{ClusterName: "c", ScoringPolicy: "Random"}, wantErr: "scoringPolicy"},
		{name: "weights above 100 are refused", args: Args{ClusterName: "c", TargetWeights: map[string]int64{"x": 101}}, wantErr: "targetWeights[x]"},
		{name: "defaults with a cluster name are valid", args: Args{ClusterName: "c"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.args
			a.setDefaults()
			err := a.validate()
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("validate() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestFilterKeepsNamespacedTargetsToTheirNamespace(t *testing.T) {
	target := &targets.Target{Ref: targets.Ref{Namespace: "team-a", Name: "c2"}, Scope: "team-a"}
	p := &Plugin{targetOf: func(node string) *targets.Target {
		if node == target.Ref.VirtualNodeName() {
			return target
		}
		return nil
	}}
	ni := framework.NewNodeInfo()
	ni.SetNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   target.Ref.VirtualNodeName(),
		Labels: map[string]string{v1alpha1.LabelVirtualKubeletProvider: v1alpha1.ProviderName},
	}})
	state := framework.NewCycleState()
	source := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team-b"}}
	state.Write(stateKey, &cycleState{source: source, scores: map[string]int64{}})
	got := p.Filter(context.Background(), state, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team-b"}}, ni)
	if got.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(got.Message(), ErrReasonOtherNamespace) {
		t.Errorf("Filter() = %v, want UnschedulableAndUnresolvable %q", got, ErrReasonOtherNamespace)
	}
}

func TestKeepVerdictKeepsWhatThePluginReads(t *testing.T) {
	source := &v1.Pod{Spec: v1.PodSpec{Containers: []v1.Container{{Name: "nginx", Image: "nginx"}}}}
	proxy := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nginx-1", Namespace: "default", UID: "uid-a"}}
	c, err := proxypod.MakeChaperon(source, proxy, "cluster1")
	if err != nil {
		t.Fatal(err)
	}
	c.UID, c.ResourceVersion = "uid-c", "42"
	c.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kube-scheduler-admiralty"}}
	c.Status = v1alpha1.PodChaperonStatus{
		PodStatus: v1.PodStatus{
			Phase:             v1.PodPending,
			NominatedNodeName: "cluster2-node-1",
			Conditions:        []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionFalse, Reason: v1.PodReasonUnschedulable, Message: "0/3 nodes"}},
			ContainerStatuses: []v1.ContainerStatus{{Name: "nginx"}},
		},
		NodeName: "cluster2-node-0",
	}
	obj, err := keepVerdict(c.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*v1alpha1.PodChaperon)
	want := &v1alpha1.PodChaperon{
		ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: c.Namespace, UID: c.UID, ResourceVersion: c.ResourceVersion, Labels: c.Labels},
		Status: v1alpha1.PodChaperonStatus{
			PodStatus: v1.PodStatus{Phase: c.Status.Phase, NominatedNodeName: c.Status.NominatedNodeName, Conditions: c.Status.Conditions},
			NodeName:  c.Status.NodeName,
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("trimmed chaperon (-want +got):\n%s", diff)
	}
	// Anything else passes through unchanged (tombstones).
	other := &v1.Pod{}
	if o, _ := keepVerdict(other); o != other {
		t.Errorf("keepVerdict changed a %T", other)
	}
}
