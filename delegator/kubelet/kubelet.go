// Package kubelet serves the kubelet endpoint of the virtual nodes. The API
// server calls a pod's kubelet for `kubectl logs`, `exec`, `attach` and
// `port-forward`; for a proxy pod that kubelet is this server (the virtual
// nodes advertise it), which relays each call to the proxy's delegate
// through the target cluster's own API server, with the target's
// credentials: /containerLogs/NS/POD/C becomes
// /api/v1/namespaces/NS/pods/DELEGATE/log?container=C, and so on. Streams
// (SPDY or WebSocket upgrades, followed logs) are relayed as they come.
//
// Only the leader serves: it owns the virtual nodes, which advertise its
// address, and the live set of targets.
package kubelet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/targets"
)

// Server is the kubelet endpoint of every virtual node of this cluster.
type Server struct {
	addr      string
	advertise string
	client    kubernetes.Interface
	registry  *targets.Registry
	auth      *auth

	mu sync.Mutex
	// transports to each live target, dropped when the target goes (a
	// Target changed or deleted is a new *targets.Target).
	transports map[*targets.Target]http.RoundTripper
}

var _ app.Controller = &Server{}

// NewServer is the delegator's factory of the kubelet endpoint (a
// leader-only component).
func NewServer(_ context.Context, d *app.Delegator) (app.Controller, error) {
	a, err := newAuth(d.Client)
	if err != nil {
		return nil, err
	}
	return &Server{
		addr:       d.Options.KubeletAddr,
		advertise:  d.Options.KubeletAdvertiseAddress,
		client:     d.Client,
		registry:   d.Targets,
		auth:       a,
		transports: map[*targets.Target]http.RoundTripper{},
	}, nil
}

// Name of the component.
func (s *Server) Name() string { return "kubelet" }

// Start serves until ctx is done.
func (s *Server) Start(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("server", s.Name())
	ctx = klog.NewContext(ctx, logger)
	if err := s.auth.run(ctx); err != nil {
		// Not fatal: scheduling does not need this endpoint, and the CA is
		// retried (RBAC fixed, ConfigMap created) while tokens still work.
		logger.Error(err, "Cannot read the cluster's client CA yet; client certificates are refused until it is read",
			"configMap", klog.KRef(clientCAConfigMapNamespace, clientCAConfigMapName))
	}
	// A self-signed certificate, as a kubelet makes without --tls-cert-file:
	// the API server verifies kubelets only with
	// --kubelet-certificate-authority, which cannot name a per-replica CA.
	certPEM, keyPEM, err := cert.GenerateSelfSignedCertKey(s.advertise, nil, nil)
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("--kubelet-addr: %w", err)
	}
	srv := &http.Server{
		Handler: s,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{pair},
			MinVersion:   tls.VersionTLS12,
			// Asked, not required: a bearer token is another way in, and the
			// authenticator verifies certificates against the CA it has now.
			ClientAuth: tls.RequestClientCert,
		},
		ReadHeaderTimeout: 10 * time.Second,
		// Requests, and the streams they upgrade to, end with the server.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    errorLog(logger),
	}
	logger.Info("Serving the virtual nodes' kubelet endpoint", "address", ln.Addr().String(), "advertiseAddress", s.advertise)
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, rt := range s.transports {
		utilnet.CloseIdleConnectionsFor(rt)
		delete(s.transports, t)
	}
	return nil
}

// ServeHTTP relays one kubelet call to the delegate of the proxy it names.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	logger := klog.FromContext(ctx).WithValues("path", r.URL.Path)
	u, err := s.auth.authenticate(r)
	if u == nil {
		logger.V(2).Info("Unauthenticated request refused", "remoteAddr", r.RemoteAddr, "err", err)
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	logger = logger.WithValues("user", u.GetName())
	req, err := ParseRequest(r.URL)
	if err != nil {
		writeError(w, err)
		return
	}
	proxyPod, getErr := s.client.CoreV1().Pods(req.Namespace).Get(ctx, req.Pod, metav1.GetOptions{})
	node := ""
	if getErr == nil {
		node = proxyPod.Spec.NodeName
	}
	// Authorized before the pod's existence is told: a missing pod is
	// checked against all nodes (an empty name), so that only who may
	// proxy to every node learns it.
	attrs := Attributes(u, r.Method, r.URL.Path, node)
	allowed, reason, err := s.auth.authorize(ctx, attrs)
	if err != nil {
		logger.Error(err, "Authorization failed")
		http.Error(w, "Authorization error", http.StatusInternalServerError)
		return
	}
	if !allowed {
		logger.V(2).Info("Forbidden request refused", "node", node, "reason", reason)
		http.Error(w, forbidden(u, attrs, reason), http.StatusForbidden)
		return
	}
	switch {
	case apierrors.IsNotFound(getErr):
		http.Error(w, fmt.Sprintf("pod %s/%s not found", req.Namespace, req.Pod), http.StatusNotFound)
		return
	case getErr != nil:
		logger.Error(getErr, "Cannot read the proxy pod")
		http.Error(w, fmt.Sprintf("pod %s/%s: %v", req.Namespace, req.Pod, getErr), http.StatusServiceUnavailable)
		return
	}
	logger = logger.WithValues("pod", klog.KObj(proxyPod), "node", node)
	t := s.targetOf(node)
	if t == nil {
		http.Error(w, fmt.Sprintf("pod %s/%s: node %q is not the virtual node of a connected target", req.Namespace, req.Pod, node), http.StatusServiceUnavailable)
		return
	}
	delegate, err := delegateOf(ctx, t, proxyPod)
	if err != nil {
		writeError(w, err)
		return
	}
	rt, err := s.transportFor(t)
	if err != nil {
		logger.Error(err, "Cannot connect to the target", "target", t.Ref.String())
		http.Error(w, fmt.Sprintf("target %s: %v", t.Ref, err), http.StatusServiceUnavailable)
		return
	}
	location := TargetURL(t.Client.CoreV1().RESTClient(), req, delegate)
	logger.V(2).Info("Relaying to the delegate", "target", t.Ref.String(), "delegate", klog.KRef(req.Namespace, delegate), "subresource", req.Subresource)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = location
			pr.Out.Host = ""
			pr.Out.Header = relayedHeaders(pr.Out.Header)
		},
		Transport: rt,
		// Followed logs and streams go through as they come.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			if ctx.Err() == nil {
				logger.Error(err, "Target did not answer", "target", t.Ref.String())
			}
			http.Error(w, fmt.Sprintf("target %s: %v", t.Ref, err), http.StatusBadGateway)
		},
		ErrorLog: errorLog(logger),
	}
	proxy.ServeHTTP(w, r)
}

// TargetURL is where the target's API server serves req on the delegate.
func TargetURL(client rest.Interface, req *Request, delegate string) *url.URL {
	return client.Get().Namespace(req.Namespace).Resource("pods").Name(delegate).
		SubResource(req.Subresource).VersionedParams(req.Options, scheme.ParameterCodec).URL()
}

// relayed are the request headers that reach the target: what the stream
// protocols negotiate with (Connection and Upgrade are set again by the
// ReverseProxy for an upgrade). Nothing that names an identity is passed
// on (Authorization, Impersonate-*, X-Remote-*): the target's credentials
// are the delegator's, added by its transport.
var relayed = []string{
	"Connection", "Upgrade",
	"X-Stream-Protocol-Version",
	"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions",
	"Accept", "Accept-Encoding", "Content-Type", "Content-Length", "Te",
}

func relayedHeaders(in http.Header) http.Header {
	out := http.Header{}
	for _, k := range relayed {
		if v, ok := in[k]; ok {
			out[k] = v
		}
	}
	return out
}

// targetOf returns the live target whose virtual node is node.
func (s *Server) targetOf(node string) *targets.Target {
	if node == "" {
		return nil
	}
	return s.registry.ByVirtualNode(node)
}

// delegateOf finds the proxy's delegate in the target through its
// PodChaperon, found by its parent-uid label (the label holds the proxy's
// UID, so a proxy recreated under the same name never reaches an older
// incarnation's delegate): the delegate is the pod of the chaperon's name
// that the chaperon controls. A source may not list the target's pods; it
// may read its delegates by name once the target's delegator has added them
// to the namespace's delegates Role, about a second after they appear.
// A Forbidden answer is asked again for up to delegateWait; then the answer
// is "not yet" (404 without a delegate, 503 while not readable), as for a
// delegate not made yet.
func delegateOf(ctx context.Context, t *targets.Target, proxyPod *corev1.Pod) (string, error) {
	ch, err := chaperonOf(ctx, t, proxyPod)
	if err != nil {
		return "", &StatusError{Code: http.StatusServiceUnavailable, Message: fmt.Sprintf("target %s: PodChaperon of %s/%s: %v", t.Ref, proxyPod.Namespace, proxyPod.Name, err)}
	}
	if ch == nil {
		return "", &StatusError{Code: http.StatusNotFound, Message: fmt.Sprintf("target %s: no delegate of %s/%s (yet)", t.Ref, proxyPod.Namespace, proxyPod.Name)}
	}
	pod, err := targets.GetDelegate(ctx, t.Client, ch.Namespace, ch.Name, delegateWait)
	switch {
	case apierrors.IsNotFound(err):
		return "", &StatusError{Code: http.StatusNotFound, Message: fmt.Sprintf("target %s: no delegate of %s/%s (yet)", t.Ref, proxyPod.Namespace, proxyPod.Name)}
	case apierrors.IsForbidden(err):
		return "", &StatusError{Code: http.StatusServiceUnavailable, Message: fmt.Sprintf(
			"target %s: the delegate %s/%s of %s/%s is not readable by this source (yet): the target lets its sources read their delegates about a second after they appear (%v)",
			t.Ref, ch.Namespace, ch.Name, proxyPod.Namespace, proxyPod.Name, err)}
	case err != nil:
		return "", &StatusError{Code: http.StatusServiceUnavailable, Message: fmt.Sprintf("target %s: delegate of %s/%s: %v", t.Ref, proxyPod.Namespace, proxyPod.Name, err)}
	}
	if !targets.IsDelegateOf(pod, ch) {
		// Not made from this chaperon (yet): an older one's, or not a delegate.
		return "", &StatusError{Code: http.StatusNotFound, Message: fmt.Sprintf("target %s: no delegate of %s/%s (yet)", t.Ref, proxyPod.Namespace, proxyPod.Name)}
	}
	return pod.Name, nil
}

// delegateWait is how long a call waits for the target to let this source
// read a delegate it has just made.
var delegateWait = 5 * time.Second

// chaperonOf returns the proxy's PodChaperon in the target, preferring one
// that is not being deleted, or nil if there is none. It reads the target's
// chaperon cache (the feedback controller's informer) if the target is
// readable (targets.Target.Readable), and asks the target if it is not or
// the cache has none, as right after the chaperon is created.
func chaperonOf(ctx context.Context, t *targets.Target, proxyPod *corev1.Pod) (*v1alpha1.PodChaperon, error) {
	sel := labels.SelectorFromSet(labels.Set{v1alpha1.LabelParentUID: string(proxyPod.UID)})
	var found []*v1alpha1.PodChaperon
	if t.Readable() {
		found, _ = t.Chaperons.Multicluster().V1alpha1().PodChaperons().Lister().PodChaperons(proxyPod.Namespace).List(sel)
	}
	if len(found) == 0 {
		list, err := t.MCClient.MulticlusterV1alpha1().PodChaperons(proxyPod.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return nil, err
		}
		for i := range list.Items {
			found = append(found, &list.Items[i])
		}
	}
	var ch *v1alpha1.PodChaperon
	for _, c := range found {
		if ch == nil || c.DeletionTimestamp == nil {
			ch = c
		}
	}
	return ch, nil
}

// transportFor returns a transport to t's API server with t's credentials.
func (s *Server) transportFor(t *targets.Target) (http.RoundTripper, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt, ok := s.transports[t]; ok {
		return rt, nil
	}
	// HTTP/1.1 only: exec, attach and port-forward upgrade the connection to
	// SPDY, which HTTP/2 cannot carry (net/http keeps HTTP/1.1 for WebSocket
	// upgrades only), and client-go's transports offer HTTP/2 by default.
	cfg := rest.CopyConfig(t.Config)
	cfg.NextProtos = []string{"http/1.1"}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	s.transports[t] = rt
	context.AfterFunc(t.Context(), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.transports, t)
		utilnet.CloseIdleConnectionsFor(rt)
	})
	return rt, nil
}

func writeError(w http.ResponseWriter, err error) {
	var se *StatusError
	if errors.As(err, &se) {
		http.Error(w, se.Message, se.Code)
		return
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// errorLog routes net/http's own messages (TLS handshake failures, broken
// streams) to the structured log, at a verbosity that keeps probes and
// closed terminals quiet.
func errorLog(logger klog.Logger) *log.Logger {
	return log.New(logWriter{logger}, "", 0)
}

type logWriter struct{ logger klog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.logger.V(4).Info("HTTP server message", "message", strings.TrimSpace(string(p)))
	return len(p), nil
}
