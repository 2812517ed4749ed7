package follow

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
)

func backend(name string) networkingv1.IngressBackend {
	return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name}}
}

func TestIngressServicesAndSecrets(t *testing.T) {
	def := backend("default")
	ing := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{
		DefaultBackend: &def,
		TLS:            []networkingv1.IngressTLS{{SecretName: "a-tls"}, {Hosts: []string{"x"}}, {SecretName: "b-tls"}},
		Rules: []networkingv1.IngressRule{
			{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{
				{Path: "/a", Backend: backend("a")},
				{Path: "/b", Backend: backend("default")},
				{Path: "/r", Backend: networkingv1.IngressBackend{Resource: nil}},
			}}}},
			{Host: "no-http"},
		},
	}}
	if diff := cmp.Diff([]string{"default", "a"}, IngressServices(ing)); diff != "" {
		t.Errorf("services, each once, in order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a-tls", "b-tls"}, IngressSecrets(ing)); diff != "" {
		t.Errorf("TLS secrets, without the entries that name none (-want +got):\n%s", diff)
	}
}
