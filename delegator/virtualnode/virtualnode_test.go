package virtualnode

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned/fake"
	mcinformers "admiralty.io/multicluster-scheduler/apis/generated/informers/externalversions"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets"
)

func TestCommonLabels(t *testing.T) {
	node := func(unschedulable bool, labels map[string]string) v1alpha1.NodeSummary {
		return v1alpha1.NodeSummary{Name: labels["kubernetes.io/hostname"], Labels: labels, Unschedulable: unschedulable}
	}
	cases := []struct {
		name  string
		nodes []v1alpha1.NodeSummary
		want  map[string]string
	}{
		{name: "labels all nodes share are kept, others dropped", nodes: []v1alpha1.NodeSummary{
			node(false, map[string]string{"kubernetes.io/hostname": "a", "topology.kubernetes.io/region": "eu", "topology.kubernetes.io/zone": "eu-1"}),
			node(false, map[string]string{"kubernetes.io/hostname": "b", "topology.kubernetes.io/region": "eu", "topology.kubernetes.io/zone": "eu-2"}),
		}, want: map[string]string{"topology.kubernetes.io/region": "eu"}},
		{name: "an unschedulable node does not veto a label", nodes: []v1alpha1.NodeSummary{
			node(false, map[string]string{"kubernetes.io/hostname": "a", "gpu": "yes"}),
			node(true, map[string]string{"kubernetes.io/hostname": "b"}),
		}, want: map[string]string{"gpu": "yes"}},
		{name: "the hostname of a one-node cluster is not shared", nodes: []v1alpha1.NodeSummary{
			node(false, map[string]string{"kubernetes.io/hostname": "a"}),
		}, want: map[string]string{}},
		{name: "no node, no label", want: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := CommonLabels(tc.nodes)
			if len(tc.want) == 0 && len(got) == 0 {
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("CommonLabels() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildKeepsOurLabelsAndSumsResources(t *testing.T) {
	summary := &v1alpha1.ClusterSummary{
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("12")},
		Nodes: []v1alpha1.NodeSummary{{Name: "a", Labels: map[string]string{
			"topology.kubernetes.io/region": "eu",
			// A target cannot pass for another provider or name.
			v1alpha1.LabelVirtualKubeletProvider: "other",
			v1alpha1.LabelTargetName:             "spoofed",
		}}},
	}
	n := Build(targets.Ref{Namespace: "default", Name: "c2"}, summary, Options{KubeletPort: 10250})
	want := map[string]string{
		"topology.kubernetes.io/region":      "eu",
		v1alpha1.LabelVirtualKubeletProvider: v1alpha1.ProviderName,
		v1alpha1.LabelTargetName:             "c2",
		"type":                               "virtual-kubelet",
		"kubernetes.io/role":                 "cluster",
		"kubernetes.io/hostname":             "admiralty-namespace-default-c2",
	}
	if diff := cmp.Diff(want, n.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if n.Name != "admiralty-namespace-default-c2" {
		t.Errorf("name = %q", n.Name)
	}
	if cpu := n.Status.Allocatable[corev1.ResourceCPU]; cpu.String() != "12" {
		t.Errorf("allocatable cpu = %s, want 12", cpu.String())
	}
	if n.Status.DaemonEndpoints.KubeletEndpoint.Port != 10250 {
		t.Errorf("kubelet port = %d, want 10250", n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	}
}

func TestBuildWithoutSummaryHasNoCapacity(t *testing.T) {
	n := Build(targets.Ref{Name: "c3"}, nil, Options{})
	if n.Name != "admiralty-cluster-c3" {
		t.Errorf("name = %q, want admiralty-cluster-c3", n.Name)
	}
	if cpu := n.Status.Allocatable[corev1.ResourceCPU]; !cpu.IsZero() {
		t.Errorf("allocatable cpu = %s, want 0", cpu.String())
	}
}

// Names near the limits: a Target's name may have 253 characters and its
// namespace 63, but label values only 63; the node's name and labels stay
// valid and distinct.
func TestBuildLongNames(t *testing.T) {
	long := strings.Repeat("a", 250)
	ns := strings.Repeat("n", 63)
	seen := map[string]bool{}
	for _, ref := range []targets.Ref{
		{Namespace: ns, Name: long + "x"},
		{Namespace: ns, Name: long + "y"},
		{Name: long + "x"},
		{Name: strings.Repeat("b", 60)},
	} {
		n := Build(ref, nil, Options{})
		if errs := validation.IsDNS1123Subdomain(n.Name); len(errs) > 0 {
			t.Errorf("%v: node name %q: %v", ref, n.Name, errs)
		}
		for k, v := range n.Labels {
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Errorf("%v: label %s=%q: %v", ref, k, v, errs)
			}
		}
		if seen[n.Name] || seen[n.Labels[corev1.LabelHostname]+"/host"] {
			t.Errorf("%v: node name or hostname collides: %s", ref, n.Name)
		}
		seen[n.Name], seen[n.Labels[corev1.LabelHostname]+"/host"] = true, true
	}
}

// virtual-kubelet's status callback blocks once its node loop no longer
// drains it; notify, called from informer handlers, must not.
func TestNotifyNeverBlocks(t *testing.T) {
	target := &targets.Target{
		Ref:       targets.Ref{Namespace: "ns", Name: "c2"},
		Summaries: mcinformers.NewSharedInformerFactory(fake.NewSimpleClientset(), 0),
	}
	p := &provider{target: target}
	p.notify() // before NotifyNodeStatus: nothing to do

	ctx, cancel := context.WithCancel(context.Background())
	statusCh := make(chan *corev1.Node, 1) // as virtual-kubelet's node loop has
	p.NotifyNodeStatus(ctx, func(n *corev1.Node) { statusCh <- n })
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 10; i++ {
			p.notify()
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("notify blocked on a callback that nobody drains")
	}
	select {
	case n := <-statusCh:
		if n.Name != "admiralty-namespace-ns-c2" {
			t.Errorf("status update for node %q", n.Name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no status update delivered")
	}
	cancel()
	p.notify() // after the loop stopped
}

// A summary changes with every pod of the target; the virtual node only
// with the target's labels and resources. Only a change of the node is
// given to virtual-kubelet (a status write).
func TestSameNodeIgnoresWhatTheNodeDoesNotShow(t *testing.T) {
	ref := targets.Ref{Namespace: "ns", Name: "c2"}
	summary := func(requested, allocatable string, zone string) *v1alpha1.ClusterSummary {
		return &v1alpha1.ClusterSummary{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(allocatable)},
			Nodes: []v1alpha1.NodeSummary{{
				Name: "n1", Ready: true, Labels: map[string]string{corev1.LabelTopologyZone: zone},
				Requested: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(requested)},
				Pods:      3,
			}},
		}
	}
	base := Build(ref, summary("1", "4", "a"), Options{})
	later := Build(ref, summary("2", "4", "a"), Options{})
	later.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Now().Add(time.Minute))
	if !sameNode(base, later) {
		t.Errorf("more pods in the target (and a later heartbeat) changed the virtual node:\n%s", cmp.Diff(base, later))
	}
	for name, n := range map[string]*corev1.Node{
		"allocatable": Build(ref, summary("1", "8", "a"), Options{}),
		"labels":      Build(ref, summary("1", "4", "b"), Options{}),
		"no summary":  Build(ref, nil, Options{}),
	} {
		if sameNode(base, n) {
			t.Errorf("%s: a change of the virtual node was not seen", name)
		}
	}
}

// A target that accepts connections but never answers uses up the ping's
// deadline; the node's Ready condition is still written, with a deadline of
// its own, so that the node turns NotReady as for a target that refuses.
func TestPingOfAHungTargetStillWritesTheCondition(t *testing.T) {
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hung.Close()
	mc, err := versioned.NewForConfig(&rest.Config{Host: hung.URL})
	if err != nil {
		t.Fatal(err)
	}
	target := &targets.Target{Ref: targets.Ref{Namespace: "ns", Name: "c2"}, Scope: "ns", MCClient: mc}
	registry := targets.NewRegistry(targets.Options{}, kubefake.NewClientset(), fake.NewSimpleClientset(),
		mcinformers.NewSharedInformerFactory(fake.NewSimpleClientset(), 0))
	type call struct {
		ready  bool
		ctxErr error
	}
	var calls []call
	p := &provider{target: target, registry: registry, setReady: func(ctx context.Context, name string, ready bool, message string) {
		calls = append(calls, call{ready: ready, ctxErr: ctx.Err()})
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond) // as virtual-kubelet's ping timeout
	defer cancel()
	if err := p.Ping(ctx); err == nil {
		t.Fatal("Ping of a target that never answers succeeded")
	}
	if len(calls) != 1 || calls[0].ready || calls[0].ctxErr != nil {
		t.Fatalf("setReady calls %+v, want one NotReady with a live context", calls)
	}
}

// A summary that arrives after the node was registered but before
// virtual-kubelet asked for status updates (its notify found no channel)
// still reaches the node: the status loop looks once when it starts.
func TestSummaryBeforeStatusLoopIsNotLost(t *testing.T) {
	summary := &v1alpha1.ClusterSummary{
		ObjectMeta:  metav1.ObjectMeta{Name: "cluster1"},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("12")},
		Nodes:       []v1alpha1.NodeSummary{{Name: "n1", Ready: true}},
	}
	factory := mcinformers.NewSharedInformerFactory(fake.NewSimpleClientset(summary), 0)
	target := &targets.Target{Ref: targets.Ref{Namespace: "ns", Name: "c1"}, Summaries: factory}
	p := &provider{target: target}
	p.registered = p.node() // before the informer synced: no capacity
	if cpu := p.registered.Status.Allocatable[corev1.ResourceCPU]; !cpu.IsZero() {
		t.Fatalf("registered node has %s CPU before any summary", cpu.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Multicluster().V1alpha1().ClusterSummaries().Informer()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	p.notify() // the informer's handler: no status loop yet

	statusCh := make(chan *corev1.Node, 1)
	p.NotifyNodeStatus(ctx, func(n *corev1.Node) { statusCh <- n })
	select {
	case n := <-statusCh:
		if cpu := n.Status.Allocatable[corev1.ResourceCPU]; cpu.String() != "12" {
			t.Errorf("status update with %s CPU, want the summary's 12", cpu.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the summary that arrived before the status loop never reached the node")
	}
}
