package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/proxypod"
)

// Server serves the webhook on one replica, leader or not (an
// app.ServerFactory): the API server may call any replica behind the
// Service. It reads the serving certificate from the Secret that the
// leader's Manager writes, and looks namespaces up in an informer cache.
type Server struct {
	addr       string
	client     kubernetes.Interface
	namespaces corelisters.NamespaceLister
	factories  []informers.SharedInformerFactory
	cert       atomic.Pointer[tls.Certificate]
	logger     logr.Logger
}

// NewServer is the delegator's factory of the webhook Server.
func NewServer(ctx context.Context, d *app.Delegator) (app.Controller, error) {
	s := &Server{
		addr:   d.Options.WebhookAddr,
		client: d.Client,
		logger: klog.FromContext(ctx).WithValues("server", "webhook"),
	}
	nsFactory := informers.NewSharedInformerFactory(d.Client, 0)
	s.namespaces = nsFactory.Core().V1().Namespaces().Lister()
	secretFactory := informers.NewSharedInformerFactoryWithOptions(d.Client, 0,
		informers.WithNamespace(d.Options.Namespace),
		informers.WithTweakListOptions(byName(SecretName)))
	s.factories = []informers.SharedInformerFactory{nsFactory, secretFactory}
	_, err := secretFactory.Core().V1().Secrets().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.loadCertificate,
		UpdateFunc: func(_, obj any) { s.loadCertificate(obj) },
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Name of the server.
func (s *Server) Name() string { return "webhook" }

// Start serves until ctx is done, then drains for up to 5 seconds.
func (s *Server) Start(ctx context.Context) error {
	for _, f := range s.factories {
		f.Start(ctx.Done())
		defer f.Shutdown()
	}
	listener, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("--webhook-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, NewHandler(s.logger, s.namespace))
	server := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: s.getCertificate,
		},
		// TLS handshake failures (a caller that does not trust a new CA
		// yet...) are worth a line, not the raw standard logger.
		ErrorLog: log.New(logWriter{s.logger}, "", 0),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- server.ServeTLS(listener, "", "") }()
	s.logger.Info("Serving the pod admission webhook", "address", listener.Addr().String(), "path", Path)
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

func (s *Server) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cert.Load(); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no serving certificate yet: waiting for Secret %s, which the leading delegator writes", SecretName)
}

// loadCertificate switches to the serving certificate of the Secret. An
// invalid one is logged and the current one kept.
func (s *Server) loadCertificate(obj any) {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	pair, err := tls.X509KeyPair(secret.Data[keyCert], secret.Data[keyKey])
	if err != nil {
		s.logger.Error(err, "Invalid serving certificate in the webhook's Secret; keeping the current one", "secret", klog.KObj(secret))
		return
	}
	if old := s.cert.Load(); old != nil && len(old.Certificate) > 0 && string(old.Certificate[0]) == string(pair.Certificate[0]) {
		return
	}
	s.cert.Store(&pair)
	s.logger.Info("Loaded the serving certificate", "secret", klog.KObj(secret), "notAfter", pair.Leaf.NotAfter)
}

// namespace looks the namespace up in the cache. The API server's
// namespace selector let the request through, so a namespace that the
// cache does not know, or knows without the label, means the cache is
// behind (the namespace was just created or labeled): it is read from the
// API server then, which a steady state never needs.
func (s *Server) namespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	ns, err := s.namespaces.Get(name)
	if err == nil && proxypod.NamespaceEnabled(ns) {
		return ns, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	return s.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
}

// logWriter routes the HTTP server's error log to the structured logger.
type logWriter struct{ logger logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.logger.V(2).Info("HTTP server", "message", strings.TrimSpace(string(p)))
	return len(p), nil
}
