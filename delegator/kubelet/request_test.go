package kubelet

import (
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The kubelet URLs are the ones kube-apiserver builds (LogLocation,
// ExecLocation, AttachLocation, PortForwardLocation); the wanted URLs are
// the pod subresources of the delegate at the target.
func TestTargetURLTranslatesKubeletCalls(t *testing.T) {
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "https://target.example:6443"})
	if err != nil {
		t.Fatal(err)
	}
	const api = "https://target.example:6443/api/v1/namespaces/ns1/pods/web-0-1a2b3"
	cases := []struct {
		name    string
		kubelet string
		want    string
	}{
		{
			name:    "plain logs name the container in the query",
			kubelet: "/containerLogs/ns1/web-0/nginx",
			want:    api + "/log?container=nginx",
		},
		{
			name:    "followed logs with tail, since, timestamps and a byte limit keep every option",
			kubelet: "/containerLogs/ns1/web-0/nginx?follow=true&limitBytes=100&sinceSeconds=60&tailLines=10&timestamps=true",
			want:    api + "/log?container=nginx&follow=true&limitBytes=100&sinceSeconds=60&tailLines=10&timestamps=true",
		},
		{
			name:    "previous logs stay previous",
			kubelet: "/containerLogs/ns1/web-0/nginx?previous=true",
			want:    api + "/log?container=nginx&previous=true",
		},
		{
			name:    "logs since a time keep the time",
			kubelet: "/containerLogs/ns1/web-0/nginx?sinceTime=2026-11-23T10%3A00%3A00Z",
			want:    api + "/log?container=nginx&sinceTime=2026-11-23T10%3A00%3A00Z",
		},
		{
			name:    "the kubelet's older tail parameter becomes tailLines",
			kubelet: "/containerLogs/ns1/web-0/nginx?tail=5",
			want:    api + "/log?container=nginx&tailLines=5",
		},
		{
			name:    "a tail of all asks for every line",
			kubelet: "/containerLogs/ns1/web-0/nginx?tail=all&tailLines=5",
			want:    api + "/log?container=nginx",
		},
		{
			name:    "the default stream All is not passed on, for targets without split streams",
			kubelet: "/containerLogs/ns1/web-0/nginx?stream=All",
			want:    api + "/log?container=nginx",
		},
		{
			name:    "a single stream is passed on",
			kubelet: "/containerLogs/ns1/web-0/nginx?stream=Stderr",
			want:    api + "/log?container=nginx&stream=Stderr",
		},
		{
			name:    "false booleans are left out",
			kubelet: "/containerLogs/ns1/web-0/nginx?follow=false&previous=0&timestamps=",
			want:    api + "/log?container=nginx",
		},
		{
			name:    "exec turns the kubelet's input, output and error into stdin, stdout and stderr and keeps the command in order",
			kubelet: "/exec/ns1/web-0/nginx?command=sh&command=-c&command=echo+hi&input=1&output=1&error=1&tty=1",
			want:    api + "/exec?command=sh&command=-c&command=echo+hi&container=nginx&stderr=true&stdin=true&stdout=true&tty=true",
		},
		{
			name:    "exec without a terminal asks only for the streams it uses",
			kubelet: "/exec/ns1/web-0/nginx?command=echo&command=hi&output=1&error=1",
			want:    api + "/exec?command=echo&command=hi&container=nginx&stderr=true&stdout=true",
		},
		{
			name:    "a stream flag other than 1 is off, as the kubelet reads it",
			kubelet: "/exec/ns1/web-0/nginx?command=true&input=true&output=1&error=0",
			want:    api + "/exec?command=true&container=nginx&stdout=true",
		},
		{
			name:    "attach keeps its streams and terminal",
			kubelet: "/attach/ns1/web-0/nginx?input=1&output=1&tty=1",
			want:    api + "/attach?container=nginx&stdin=true&stdout=true&tty=true",
		},
		{
			name:    "port-forward's comma-joined port becomes repeated ports",
			kubelet: "/portForward/ns1/web-0?port=8080%2C9090",
			want:    api + "/portforward?ports=8080&ports=9090",
		},
		{
			name:    "port-forward over SPDY names no port in the query",
			kubelet: "/portForward/ns1/web-0",
			want:    api + "/portforward",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(tc.kubelet)
			if err != nil {
				t.Fatal(err)
			}
			req, err := ParseRequest(u)
			if err != nil {
				t.Fatalf("ParseRequest(%s): %v", tc.kubelet, err)
			}
			if req.Namespace != "ns1" || req.Pod != "web-0" {
				t.Errorf("ParseRequest(%s) names pod %s/%s, want ns1/web-0", tc.kubelet, req.Namespace, req.Pod)
			}
			got := TargetURL(client.CoreV1().RESTClient(), req, "web-0-1a2b3").String()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("target URL (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRequestRefusesWhatTheKubeletRefuses(t *testing.T) {
	cases := []struct {
		name     string
		kubelet  string
		wantCode int
	}{
		{name: "a kubelet path this endpoint does not serve is not found", kubelet: "/pods", wantCode: http.StatusNotFound},
		{name: "stats are not served", kubelet: "/stats/summary", wantCode: http.StatusNotFound},
		{name: "logs without a container are not found", kubelet: "/containerLogs/ns1/web-0", wantCode: http.StatusNotFound},
		{name: "an empty path segment is not found", kubelet: "/exec/ns1//nginx?command=sh", wantCode: http.StatusNotFound},
		{name: "a path with a pod UID is not one the API server calls", kubelet: "/exec/ns1/web-0/uid/nginx?command=sh", wantCode: http.StatusNotFound},
		{name: "exec without a command is a bad request", kubelet: "/exec/ns1/web-0/nginx?output=1", wantCode: http.StatusBadRequest},
		{name: "a tail that is not a number is a bad request", kubelet: "/containerLogs/ns1/web-0/nginx?tailLines=ten", wantCode: http.StatusBadRequest},
		{name: "a since time that is not RFC 3339 is a bad request", kubelet: "/containerLogs/ns1/web-0/nginx?sinceTime=yesterday", wantCode: http.StatusBadRequest},
		{name: "an unknown stream is a bad request", kubelet: "/containerLogs/ns1/web-0/nginx?stream=Stdin", wantCode: http.StatusBadRequest},
		{name: "a port beyond 65535 is a bad request", kubelet: "/portForward/ns1/web-0?port=70000", wantCode: http.StatusBadRequest},
		{name: "port zero is a bad request", kubelet: "/portForward/ns1/web-0?port=0", wantCode: http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(tc.kubelet)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseRequest(u)
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("ParseRequest(%s) = %v, want a StatusError %d", tc.kubelet, err, tc.wantCode)
			}
			if se.Code != tc.wantCode {
				t.Errorf("ParseRequest(%s) status %d (%s), want %d", tc.kubelet, se.Code, se.Message, tc.wantCode)
			}
		})
	}
}

func TestAttributesAreTheKubeletsForItsNode(t *testing.T) {
	u := &user.DefaultInfo{Name: "kube-apiserver-kubelet-client", Groups: []string{"system:masters"}}
	cases := []struct {
		name   string
		method string
		want   authorizer.AttributesRecord
	}{
		{
			name:   "a GET (logs) is get on the node's proxy subresource",
			method: http.MethodGet,
			want: authorizer.AttributesRecord{User: u, Verb: "get", APIVersion: "v1", Resource: "nodes", Subresource: "proxy",
				Name: "admiralty-cluster-c2", ResourceRequest: true, Path: "/containerLogs/ns1/web-0/nginx"},
		},
		{
			name:   "a POST (exec over SPDY) is create on the node's proxy subresource",
			method: http.MethodPost,
			want: authorizer.AttributesRecord{User: u, Verb: "create", APIVersion: "v1", Resource: "nodes", Subresource: "proxy",
				Name: "admiralty-cluster-c2", ResourceRequest: true, Path: "/containerLogs/ns1/web-0/nginx"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Attributes(u, tc.method, "/containerLogs/ns1/web-0/nginx", "admiralty-cluster-c2")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("attributes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRelayedHeadersCarryNoIdentity(t *testing.T) {
	in := http.Header{
		"Authorization":             {"Bearer caller-token"},
		"Impersonate-User":          {"system:admin"},
		"Impersonate-Group":         {"system:masters"},
		"X-Remote-User":             {"someone"},
		"Cookie":                    {"session=1"},
		"User-Agent":                {"kube-apiserver"},
		"Connection":                {"Upgrade"},
		"Upgrade":                   {"SPDY/3.1"},
		"X-Stream-Protocol-Version": {"v5.channel.k8s.io", "v4.channel.k8s.io"},
	}
	want := http.Header{
		"Connection":                {"Upgrade"},
		"Upgrade":                   {"SPDY/3.1"},
		"X-Stream-Protocol-Version": {"v5.channel.k8s.io", "v4.channel.k8s.io"},
	}
	if diff := cmp.Diff(want, relayedHeaders(in)); diff != "" {
		t.Errorf("relayed headers (-want +got):\n%s", diff)
	}
}
