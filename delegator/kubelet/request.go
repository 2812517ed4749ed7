package kubelet

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Request is one call of the API server on the kubelet endpoint, about one
// pod, as the API server makes it for `kubectl logs`, `exec`, `attach` and
// `port-forward`.
type Request struct {
	Namespace string
	Pod       string
	// Subresource of the pod in the API that serves the same call: log,
	// exec, attach or portforward.
	Subresource string
	// Options are the call's options as the pod subresource takes them
	// (*corev1.PodLogOptions, PodExecOptions, PodAttachOptions or
	// PodPortForwardOptions), container included.
	Options runtime.Object
}

// StatusError is an error with the HTTP status that the caller gets.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string { return e.Message }

func badRequest(format string, args ...any) error {
	return &StatusError{Code: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// ParseRequest reads a kubelet path and query. The paths are those the API
// server calls (pkg/registry/core/pod LogLocation, ExecLocation,
// AttachLocation and PortForwardLocation):
//
//	/containerLogs/{namespace}/{pod}/{container}
//	/exec/{namespace}/{pod}/{container}
//	/attach/{namespace}/{pod}/{container}
//	/portForward/{namespace}/{pod}
//
// The kubelet's query differs from the pod subresources' (input=1 rather
// than stdin=true, output and error for stdout and stderr, port=80,443
// rather than ports=80&ports=443, the container in the path rather than the
// query), so the options are parsed here as the kubelet parses them
// (remotecommand's "1" for the streams, the API machinery's booleans for
// logs) and encoded again for the API.
func ParseRequest(u *url.URL) (*Request, error) {
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	for _, p := range parts {
		// Namespaces, pods and containers are names: never "", "." or
		// "..", which would move the target URL off the delegate.
		if p == "" || len(path.IsValidPathSegmentName(p)) > 0 {
			return nil, notFound(u.Path)
		}
	}
	q := u.Query()
	switch {
	case len(parts) == 4 && parts[0] == "containerLogs":
		opts, err := logOptions(q)
		if err != nil {
			return nil, err
		}
		opts.Container = parts[3]
		return &Request{Namespace: parts[1], Pod: parts[2], Subresource: "log", Options: opts}, nil
	case len(parts) == 4 && parts[0] == "exec":
		opts := &corev1.PodExecOptions{
			Container: parts[3],
			Command:   q["command"],
			Stdin:     q.Get(corev1.ExecStdinParam) == "1",
			Stdout:    q.Get(corev1.ExecStdoutParam) == "1",
			Stderr:    q.Get(corev1.ExecStderrParam) == "1",
			TTY:       q.Get(corev1.ExecTTYParam) == "1",
		}
		if len(opts.Command) == 0 {
			return nil, badRequest("exec: no command")
		}
		return &Request{Namespace: parts[1], Pod: parts[2], Subresource: "exec", Options: opts}, nil
	case len(parts) == 4 && parts[0] == "attach":
		opts := &corev1.PodAttachOptions{
			Container: parts[3],
			Stdin:     q.Get(corev1.ExecStdinParam) == "1",
			Stdout:    q.Get(corev1.ExecStdoutParam) == "1",
			Stderr:    q.Get(corev1.ExecStderrParam) == "1",
			TTY:       q.Get(corev1.ExecTTYParam) == "1",
		}
		return &Request{Namespace: parts[1], Pod: parts[2], Subresource: "attach", Options: opts}, nil
	case len(parts) == 3 && parts[0] == "portForward":
		opts := &corev1.PodPortForwardOptions{}
		// The API server joins the ports with commas (api.PortHeader);
		// the port-forward protocol over SPDY carries them in stream
		// headers instead, so none is fine too.
		for _, v := range q[corev1.PortHeader] {
			for _, s := range strings.Split(v, ",") {
				port, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
				if err != nil || port == 0 {
					return nil, badRequest("portForward: invalid port %q", s)
				}
				opts.Ports = append(opts.Ports, int32(port))
			}
		}
		return &Request{Namespace: parts[1], Pod: parts[2], Subresource: "portforward", Options: opts}, nil
	}
	return nil, notFound(u.Path)
}

func notFound(path string) error {
	return &StatusError{Code: http.StatusNotFound, Message: fmt.Sprintf("%s: not a kubelet path this endpoint serves (containerLogs, exec, attach, portForward)", path)}
}

// logOptions parses the query of /containerLogs as the kubelet does,
// including its older "tail" parameter.
func logOptions(q url.Values) (*corev1.PodLogOptions, error) {
	opts := &corev1.PodLogOptions{
		Follow:     queryBool(q, "follow"),
		Previous:   queryBool(q, "previous"),
		Timestamps: queryBool(q, "timestamps"),
	}
	var err error
	if opts.SinceSeconds, err = queryInt(q, "sinceSeconds"); err != nil {
		return nil, err
	}
	if opts.LimitBytes, err = queryInt(q, "limitBytes"); err != nil {
		return nil, err
	}
	// q is a copy (url.URL.Query parses anew), so it may be edited.
	if tail := q.Get("tail"); tail == "all" {
		q.Del("tailLines")
	} else if tail != "" {
		q.Set("tailLines", tail)
	}
	if opts.TailLines, err = queryInt(q, "tailLines"); err != nil {
		return nil, err
	}
	if s := q.Get("sinceTime"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return nil, badRequest("sinceTime %q: %v", s, err)
		}
		opts.SinceTime = &metav1.Time{Time: t}
	}
	// The API server sends stream=All, the default, whenever its
	// PodLogsQuerySplitStreams gate is on; the target's API server may not
	// have that gate and would refuse the field, so only a real choice of
	// one stream is passed on.
	if s := q.Get("stream"); s != "" && s != corev1.LogStreamAll {
		if s != corev1.LogStreamStdout && s != corev1.LogStreamStderr {
			return nil, badRequest("stream %q: want All, Stdout or Stderr", s)
		}
		opts.Stream = &s
	}
	return opts, nil
}

// queryBool reads a boolean as the API machinery does
// (runtime.Convert_Slice_string_To_bool), as the kubelet reads log
// options: absent, empty, "0" and "false" are false, anything else true.
func queryBool(q url.Values, key string) bool {
	v, ok := q[key]
	if !ok || len(v) == 0 {
		return false
	}
	return v[0] != "" && v[0] != "0" && !strings.EqualFold(v[0], "false")
}

func queryInt(q url.Values, key string) (*int64, error) {
	s := q.Get(key)
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil, badRequest("%s %q: not an integer", key, s)
	}
	return &n, nil
}
