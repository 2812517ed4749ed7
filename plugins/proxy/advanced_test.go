package proxy

import (
	"context"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/latest"
	"k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	"k8s.io/kubernetes/pkg/scheduler/metrics"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/proxypod"
)

var schedulerMetrics sync.Once

// The upstream PodTopologySpread plugin, as AdmiraltyProxy runs it over the
// virtual nodes: proxies count in their virtual node's region, and the
// virtual nodes of other namespaces' Targets are no domain.
func TestSpreadOverVirtualNodes(t *testing.T) {
	schedulerMetrics.Do(metrics.Register)
	ctx := context.Background()
	vn := func(name, region string) *v1.Node {
		return vnode(name, map[string]string{v1.LabelHostname: name, v1.LabelTopologyRegion: region, v1alpha1.LabelVirtualKubeletProvider: v1alpha1.ProviderName})
	}
	us, eu, other := vn("us", "us"), vn("eu", "eu"), vn("other-namespace", "ap")
	var pods []*v1.Pod
	for _, name := range []string{"p1", "p2"} {
		pods = append(pods, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{"app": "x"}}, Spec: v1.PodSpec{NodeName: "us"}})
	}
	pods = append(pods, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "eu-1", Namespace: "ns", Labels: map[string]string{"app": "x"}}, Spec: v1.PodSpec{NodeName: "eu"}})
	snap := cache.NewSnapshot(pods, []*v1.Node{us, eu, other})
	cfg, err := latest.Default()
	if err != nil {
		t.Fatal(err)
	}
	profile := cfg.Profiles[0].DeepCopy()
	profile.Plugins = &config.Plugins{
		QueueSort: config.PluginSet{Enabled: []config.Plugin{{Name: "PrioritySort"}}},
		Bind:      config.PluginSet{Enabled: []config.Plugin{{Name: "DefaultBinder"}}},
	}
	fw, err := frameworkruntime.NewFramework(ctx, plugins.NewInTreeRegistry(), profile, frameworkruntime.WithSnapshotSharedLister(snap))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := newSpreadPlugin(ctx, fw)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "new", Namespace: "ns", Labels: map[string]string{"app": "x"}},
		Spec: v1.PodSpec{NodeSelector: map[string]string{v1alpha1.LabelVirtualKubeletProvider: v1alpha1.ProviderName}}}
	c := []v1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: v1.LabelTopologyRegion, WhenUnsatisfiable: v1.DoNotSchedule,
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}}
	// "other-namespace" is not eligible: were it a domain, its 0 pods would
	// rule eu out too.
	sp := spreadPod(proxy, c, []*v1.Node{us, eu})
	infos, err := snap.NodeInfos().List()
	if err != nil {
		t.Fatal(err)
	}
	state := framework.NewCycleState()
	if _, st := pl.PreFilter(ctx, state, sp, infos); !st.IsSuccess() {
		t.Fatalf("PreFilter() = %v", st)
	}
	want := map[string]bool{"us": false, "eu": true}
	for _, ni := range infos {
		name := ni.Node().Name
		w, ok := want[name]
		if !ok {
			continue
		}
		if got := pl.Filter(ctx, state, sp, ni).IsSuccess(); got != w {
			t.Errorf("Filter(%s) fits = %v, want %v", name, got, w)
		}
	}
}

func vnode(name string, labels map[string]string) *v1.Node {
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func TestAcrossClustersKeepsKeysEveryVirtualNodeCarries(t *testing.T) {
	region := v1.TopologySpreadConstraint{TopologyKey: v1.LabelTopologyRegion, MaxSkew: 1}
	cluster := v1.TopologySpreadConstraint{TopologyKey: v1alpha1.LabelTargetName, MaxSkew: 1}
	zone := v1.TopologySpreadConstraint{TopologyKey: v1.LabelTopologyZone, MaxSkew: 1}
	host := v1.TopologySpreadConstraint{TopologyKey: v1.LabelHostname, MaxSkew: 1}
	nodes := []*v1.Node{
		vnode("a", map[string]string{v1.LabelTopologyRegion: "us", v1alpha1.LabelTargetName: "c1", v1.LabelTopologyZone: "us-1", v1.LabelHostname: "a"}),
		// A target whose nodes span zones: its virtual node has no zone.
		vnode("b", map[string]string{v1.LabelTopologyRegion: "eu", v1alpha1.LabelTargetName: "c2", v1.LabelHostname: "b"}),
	}
	got := AcrossClusters([]v1.TopologySpreadConstraint{region, cluster, zone, host}, nodes)
	if diff := cmp.Diff([]v1.TopologySpreadConstraint{region, cluster}, got); diff != "" {
		t.Errorf("AcrossClusters() (-want +got):\n%s", diff)
	}
	if got := AcrossClusters([]v1.TopologySpreadConstraint{region}, nil); got != nil {
		t.Errorf("AcrossClusters() without virtual nodes = %v, want none", got)
	}
	left := withoutKeys([]v1.TopologySpreadConstraint{region, zone, host}, map[string]bool{v1.LabelTopologyRegion: true})
	if diff := cmp.Diff([]v1.TopologySpreadConstraint{zone, host}, left); diff != "" {
		t.Errorf("withoutKeys() (-want +got):\n%s", diff)
	}
}

func TestSpreadPodCountsOnlyEligibleVirtualNodes(t *testing.T) {
	proxy := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{"app": "x"}},
		Spec: v1.PodSpec{NodeSelector: map[string]string{v1alpha1.LabelVirtualKubeletProvider: v1alpha1.ProviderName}}}
	c := []v1.TopologySpreadConstraint{{TopologyKey: v1.LabelTopologyRegion, MaxSkew: 1}}
	sp := spreadPod(proxy, c, []*v1.Node{vnode("b", nil), vnode("a", nil)})
	terms := sp.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || cmp.Diff([]string{"a", "b"}, terms[0].MatchExpressions[0].Values) != "" {
		t.Errorf("spread pod's node affinity = %+v, want the eligible virtual nodes a and b", terms)
	}
	if proxy.Spec.Affinity != nil || len(proxy.Spec.TopologySpreadConstraints) != 0 {
		t.Error("spreadPod changed the proxy")
	}
	if sp.Labels["app"] != "x" || sp.Spec.NodeSelector[v1alpha1.LabelVirtualKubeletProvider] != v1alpha1.ProviderName {
		t.Error("the spread pod lost the proxy's labels or node selector")
	}
}

func TestCanPreempt(t *testing.T) {
	prio := func(p int32) *int32 { return &p }
	never := v1.PreemptNever
	cases := []struct {
		name string
		spec v1.PodSpec
		want bool
	}{
		{name: "no priority", spec: v1.PodSpec{}, want: false},
		{name: "zero priority", spec: v1.PodSpec{Priority: prio(0)}, want: false},
		{name: "positive priority", spec: v1.PodSpec{Priority: prio(1000)}, want: true},
		{name: "positive priority that never preempts", spec: v1.PodSpec{Priority: prio(1000), PreemptionPolicy: &never}, want: false},
	}
	for _, tc := range cases {
		if got := CanPreempt(&v1.Pod{Spec: tc.spec}); got != tc.want {
			t.Errorf("%s: CanPreempt() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPartsCombine(t *testing.T) {
	cases := []struct {
		name   string
		parts  Parts
		weight int64
		want   int64
	}{
		{name: "capacity alone", parts: Parts{Capacity: 100, Affinity: -1, Spread: -1}, weight: 100, want: 100},
		{name: "a full target still beats one that fits only later", parts: Parts{Capacity: 0, Affinity: -1, Spread: -1}, weight: 100, want: 1},
		{name: "preferred affinity outweighs capacity", parts: Parts{Capacity: 0, Affinity: 100, Spread: -1}, weight: 100, want: 66},
		{name: "no affinity match ranks below", parts: Parts{Capacity: 100, Affinity: 0, Spread: -1}, weight: 100, want: 33},
		{name: "all three", parts: Parts{Capacity: 50, Affinity: 100, Spread: 100}, weight: 100, want: 90},
		{name: "target weight", parts: Parts{Capacity: 100, Affinity: -1, Spread: -1}, weight: 50, want: 50},
		{name: "target weight zero", parts: Parts{Capacity: 100, Affinity: -1, Spread: -1}, weight: 0, want: 0},
	}
	for _, tc := range cases {
		if got := tc.parts.Combine(tc.weight); got != tc.want {
			t.Errorf("%s: Combine() = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestFreed(t *testing.T) {
	node := func(cpu string, pods int32, ports ...string) v1alpha1.NodeSummary {
		return v1alpha1.NodeSummary{Name: "n1", Ready: true, Labels: map[string]string{"a": "b"},
			Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("4")},
			Requested:   v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}, Pods: pods, HostPorts: ports}
	}
	sum := func(nodes ...v1alpha1.NodeSummary) *v1alpha1.ClusterSummary {
		return &v1alpha1.ClusterSummary{Nodes: nodes}
	}
	base := sum(node("2", 2, "TCP/0.0.0.0/80"))
	cases := []struct {
		name string
		cur  *v1alpha1.ClusterSummary
		want bool
	}{
		{name: "unchanged", cur: sum(node("2", 2, "TCP/0.0.0.0/80")), want: false},
		{name: "more requested", cur: sum(node("3", 3, "TCP/0.0.0.0/80")), want: false},
		{name: "less requested", cur: sum(node("1", 2, "TCP/0.0.0.0/80")), want: true},
		{name: "fewer pods", cur: sum(node("2", 1, "TCP/0.0.0.0/80")), want: true},
		{name: "a host port freed", cur: sum(node("2", 2)), want: true},
		{name: "a new node", cur: sum(node("2", 2, "TCP/0.0.0.0/80"), v1alpha1.NodeSummary{Name: "n2", Ready: true}), want: true},
		{name: "a node relabeled", cur: func() *v1alpha1.ClusterSummary {
			s := sum(node("2", 2, "TCP/0.0.0.0/80"))
			s.Nodes[0].Labels = map[string]string{"a": "c"}
			return s
		}(), want: true},
		{name: "a node lost", cur: sum(), want: false},
	}
	for _, tc := range cases {
		if got := Freed(base, tc.cur); got != tc.want {
			t.Errorf("%s: Freed() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Labels with a prefix (those of Jobs, say) stay valid on the delegate.
func TestMakeChaperonPrefixesLabelKeysValidly(t *testing.T) {
	source := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{
		"app": "x", "batch.kubernetes.io/job-name": "j", "job-name": "j",
	}}}
	proxy := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"}}
	c, err := proxypod.MakeChaperon(source, proxy, "cluster1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"multicluster.admiralty.io/app", "batch.kubernetes.io.multicluster.admiralty.io/job-name", "multicluster.admiralty.io/job-name"} {
		if _, ok := c.Labels[want]; !ok {
			t.Errorf("no label %s in %v", want, c.Labels)
		}
	}
	for k := range c.Labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			t.Errorf("label key %q: %v", k, errs)
		}
	}
}
