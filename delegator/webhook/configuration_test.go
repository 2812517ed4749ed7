package webhook

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	apiwebhook "k8s.io/apiserver/pkg/admission/plugin/webhook"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/proxypod"
)

// calledWebhooks is what the API server does with the configuration for a
// pod creation: the webhooks whose namespace selector, object selector and
// match conditions (compiled and evaluated by the API server's own code)
// all match.
func calledWebhooks(t *testing.T, cfg *admissionregistrationv1.MutatingWebhookConfiguration, pod *corev1.Pod, ns *corev1.Namespace) []string {
	t.Helper()
	compiler := plugincel.NewConditionCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	gvk := corev1.SchemeGroupVersion.WithKind("Pod")
	attr := admission.NewAttributesRecord(pod, nil, gvk, ns.Name, pod.Name, corev1.SchemeGroupVersion.WithResource("pods"), "", admission.Create, &metav1.CreateOptions{}, false, nil)
	versioned, err := admission.NewVersionedAttributes(attr, gvk, admission.NewObjectInterfacesFromScheme(scheme.Scheme))
	if err != nil {
		t.Fatal(err)
	}
	var called []string
	for i := range cfg.Webhooks {
		h := apiwebhook.NewMutatingWebhookAccessor(fmt.Sprint(i), cfg.Name, &cfg.Webhooks[i])
		nsSel, err := h.GetParsedNamespaceSelector()
		if err != nil {
			t.Fatal(err)
		}
		objSel, err := h.GetParsedObjectSelector()
		if err != nil {
			t.Fatal(err)
		}
		if !nsSel.Matches(labels.Set(ns.Labels)) || !objSel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		res := h.GetCompiledMatcher(compiler).Match(context.Background(), versioned, nil, nil)
		if res.Error != nil {
			t.Fatalf("webhook %s: match conditions fail on %s: %v", h.GetName(), pod.Name, res.Error)
		}
		if res.Matches {
			called = append(called, h.GetName())
		}
	}
	return called
}

// TestConfigurationCallsTheRightWebhook proves, with the API server's own
// selector and CEL code, that the configuration calls the fail-closed
// webhook only for pods that ask to be proxies, the fail-open one for the
// other pods of enabled namespaces, nothing elsewhere, and never skips a
// pod that proxypod.Elected would elect.
func TestConfigurationCallsTheRightWebhook(t *testing.T) {
	ep, err := endpointOf(&app.Options{WebhookService: "admiralty/admiralty-webhook"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := configuration(ep, []byte("ca"), "admiralty")

	enabled := map[string]string{v1alpha1.LabelNamespaceEnabled: "enabled"}
	electAll := map[string]string{v1alpha1.AnnotationElect: ""}
	nsOf := func(name string, l, a map[string]string) *corev1.Namespace {
		ll := map[string]string{corev1.LabelMetadataName: name}
		for k, v := range l {
			ll[k] = v
		}
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: ll, Annotations: a}}
	}
	pod := func(name string, annotations, labels map[string]string, mutate ...func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations, Labels: labels},
			Spec:       corev1.PodSpec{SchedulerName: corev1.DefaultSchedulerName, Containers: []corev1.Container{{Name: "c", Image: "i"}}},
		}
		for _, m := range mutate {
			m(p)
		}
		return p
	}
	elect := map[string]string{v1alpha1.AnnotationElect: ""}
	pods := []*corev1.Pod{
		pod("plain", nil, nil),
		pod("no-metadata-maps", nil, nil, func(p *corev1.Pod) { p.Spec.SchedulerName = "" }),
		pod("annotated", elect, nil),
		pod("scheduler-name", nil, nil, func(p *corev1.Pod) { p.Spec.SchedulerName = v1alpha1.ProxySchedulerName }),
		pod("opted-out", map[string]string{proxypod.AnnotationNoElect: ""}, nil),
		pod("opted-out-but-annotated", map[string]string{proxypod.AnnotationNoElect: "", v1alpha1.AnnotationElect: ""}, nil),
		pod("proxy", elect, map[string]string{v1alpha1.LabelIsProxy: "true"}, func(p *corev1.Pod) { p.Spec.SchedulerName = v1alpha1.ProxySchedulerName }),
		pod("delegate", nil, map[string]string{v1alpha1.LabelParentUID: "u"}, func(p *corev1.Pod) { p.Spec.SchedulerName = v1alpha1.CandidateSchedulerName }),
		pod("candidate", nil, nil, func(p *corev1.Pod) { p.Spec.SchedulerName = v1alpha1.CandidateSchedulerName }),
		pod("bound", nil, nil, func(p *corev1.Pod) { p.Spec.NodeName = "n" }),
		pod("bound-and-annotated", elect, nil, func(p *corev1.Pod) { p.Spec.NodeName = "n" }),
		pod("mirror", map[string]string{"kubernetes.io/config.mirror": "x"}, nil),
		pod("daemonset", nil, nil, func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "d", UID: "u", Controller: ptr.To(true)}}
		}),
		pod("replicaset", nil, nil, func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "r", UID: "u", Controller: ptr.To(true)}}
		}),
		pod("not-controlled-by-a-daemonset", nil, nil, func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "d", UID: "u"}}
		}),
	}
	nss := []*corev1.Namespace{
		nsOf("plain", nil, nil),
		nsOf("plain-elect-all", nil, electAll),
		nsOf("enabled", enabled, nil),
		nsOf("enabled-elect-all", enabled, electAll),
		nsOf("kube-system", enabled, electAll),
		nsOf("admiralty", enabled, electAll),
	}
	for _, ns := range nss {
		for _, p := range pods {
			t.Run(ns.Name+"/"+p.Name, func(t *testing.T) {
				p := p.DeepCopy()
				p.Namespace = ns.Name
				called := calledWebhooks(t, cfg, p, ns)
				elected := proxypod.Elected(p, ns)
				if len(called) > 1 {
					t.Fatalf("called %v: one pod must reach at most one webhook", called)
				}
				if elected && len(called) == 0 && ns.Name != "kube-system" && ns.Name != "admiralty" {
					t.Fatalf("an elected pod calls no webhook")
				}
				if len(called) == 1 && called[0] == ExplicitWebhookName && !proxypod.ExplicitlyElected(p) {
					t.Fatalf("a pod that did not ask to be a proxy calls the fail-closed webhook")
				}
				if len(called) == 1 && called[0] == NamespaceWebhookName && proxypod.ExplicitlyElected(p) {
					t.Fatalf("a pod that asks to be a proxy calls the fail-open webhook")
				}
				if !proxypod.NamespaceEnabled(ns) && len(called) > 0 {
					t.Fatalf("a pod of a namespace that is not enabled calls %v", called)
				}
				if (ns.Name == "kube-system" || ns.Name == "admiralty") && len(called) > 0 {
					t.Fatalf("a pod of %s calls %v: it must never wait for the delegator", ns.Name, called)
				}
			})
		}
	}
}

func TestEndpoint(t *testing.T) {
	tests := []struct {
		name      string
		options   app.Options
		wantHosts []string
		wantURL   string
		wantSvc   *admissionregistrationv1.ServiceReference
	}{
		{name: "A URL is used as is, its host in the certificate.",
			options:   app.Options{WebhookURL: "https://127.0.0.1:17241/mutate-pods"},
			wantHosts: []string{"127.0.0.1"}, wantURL: "https://127.0.0.1:17241/mutate-pods"},
		{name: "A Service is called on 443 at the webhook's path, named as the API server checks it.",
			options:   app.Options{WebhookService: "admiralty/admiralty-webhook"},
			wantHosts: []string{"admiralty-webhook.admiralty.svc", "admiralty-webhook.admiralty.svc.cluster.local"},
			wantSvc:   &admissionregistrationv1.ServiceReference{Namespace: "admiralty", Name: "admiralty-webhook", Path: ptr.To(Path), Port: ptr.To[int32](443)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, err := endpointOf(&tt.options)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantHosts, ep.hosts); diff != "" {
				t.Errorf("hosts (-want +got):\n%s", diff)
			}
			if got := ptr.Deref(ep.clientConfig.URL, ""); got != tt.wantURL {
				t.Errorf("url %q, want %q", got, tt.wantURL)
			}
			if diff := cmp.Diff(tt.wantSvc, ep.clientConfig.Service); diff != "" {
				t.Errorf("service (-want +got):\n%s", diff)
			}
		})
	}
}
