package kubelet

import (
	"net/url"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// FuzzParseRequest: any path and query the endpoint may receive is refused
// with a status error or parsed into a request for one pod, whose target
// URL stays a subresource of the delegate. Seeds in
// testdata/fuzz/FuzzParseRequest; run with
// go test ./delegator/kubelet -run '^$' -fuzz FuzzParseRequest.
func FuzzParseRequest(f *testing.F) {
	f.Add("/containerLogs/ns1/web-0/nginx", "follow=true&tailLines=10&sinceTime=2026-01-01T00:00:00Z")
	f.Add("/exec/ns1/web-0/c", "command=sh&command=-c&input=1&output=1&tty=1")
	f.Add("/attach/ns1/web-0/c", "input=1&output=1")
	f.Add("/portForward/ns1/web-0", "port=80,443")
	f.Add("/portForward/ns1/web-0", "port=0,70000,x")
	f.Add("/containerLogs/../../x", "limitBytes=-1&tailLines=abc")
	f.Add("//exec//", "")
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "https://target.example:6443"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		req, err := ParseRequest(&url.URL{Path: path, RawQuery: query})
		if err != nil {
			if _, ok := err.(*StatusError); !ok {
				t.Fatalf("ParseRequest(%q, %q): %T %v, want a *StatusError", path, query, err, err)
			}
			return
		}
		if req.Namespace == "" || req.Pod == "" || strings.Contains(req.Namespace+req.Pod, "/") {
			t.Fatalf("ParseRequest(%q): namespace %q, pod %q", path, req.Namespace, req.Pod)
		}
		if pf, ok := req.Options.(*corev1.PodPortForwardOptions); ok {
			for _, p := range pf.Ports {
				if p <= 0 || p > 65535 {
					t.Fatalf("ParseRequest(%q, %q): port %d", path, query, p)
				}
			}
		}
		u := TargetURL(client.CoreV1().RESTClient(), req, "delegate-1")
		if !strings.HasSuffix(u.Path, "/pods/delegate-1/"+req.Subresource) {
			t.Fatalf("TargetURL of %q = %s, want a subresource of the delegate", path, u)
		}
	})
}
