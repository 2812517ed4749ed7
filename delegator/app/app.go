// Package app wires the delegator: flags, logging, clients, the health and
// metrics endpoint, leader election and graceful shutdown. The controllers
// themselves live in their own packages under delegator/ and run only while
// this replica leads.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/component-base/metrics/legacyregistry"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go request and leader election metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // build info
	"k8s.io/component-base/version/verflag"
	"k8s.io/klog/v2"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	mcscheme "admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned/scheme"
	mcinformers "admiralty.io/multicluster-scheduler/apis/generated/informers/externalversions"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets"
)

// Controller is one of the delegator's control loops. Start blocks until ctx
// is done; it runs only on the leading replica.
type Controller interface {
	Name() string
	Start(ctx context.Context) error
}

// ControllerFactory builds a controller from the running delegator's clients.
type ControllerFactory func(ctx context.Context, d *Delegator) (Controller, error)

// Delegator holds what controllers share: the options, the clients of the
// local cluster and its informer factories. Controllers register their
// informers with the factories while they are built; the factories start
// once every controller is built.
type Delegator struct {
	Options       *Options
	RestConfig    *rest.Config
	Client        kubernetes.Interface
	MCClient      versioned.Interface
	Recorder      record.EventRecorder
	Logger        logr.Logger
	KubeInformers informers.SharedInformerFactory
	MCInformers   mcinformers.SharedInformerFactory
	// Delegates informs on the pods labeled LabelParentClusterName only:
	// the delegates in this cluster (a target runs many other pods). The
	// chaperon controller and the source controller's delegate Roles share
	// its one watch.
	Delegates informers.SharedInformerFactory
	// Proxies informs on the proxy pods only (a source may run many
	// ordinary pods). The feedback and service controllers share its one
	// watch.
	Proxies informers.SharedInformerFactory
	// Targets is the live set of this cluster's targets (Targets and
	// ClusterTargets), with their connections; it writes their status.
	Targets *targets.Registry
}

// ServerFactory builds a component that runs on every replica, leader or
// not, from before leader election until the end of shutdown: a server the
// API server may call on any replica, such as the admission webhook. The
// Delegator it gets has no informer factories or targets yet: those belong
// to a term of leadership.
type ServerFactory func(ctx context.Context, d *Delegator) (Controller, error)

// NewCommand returns the admiralty-delegator command with the given
// controllers.
func NewCommand(factories ...ControllerFactory) *cobra.Command {
	return NewCommandWithServers(nil, factories...)
}

// NewCommandWithServers is NewCommand with servers, which run on every
// replica.
func NewCommandWithServers(servers []ServerFactory, factories ...ControllerFactory) *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "admiralty-delegator",
		Short: "Sidecar of kube-scheduler-admiralty: webhook, virtual nodes and the delegate lifecycle",
		Long: `admiralty-delegator runs beside kube-scheduler-admiralty in every cluster. It
owns the proxy pod webhook, one virtual node per target, and the controllers
that turn chosen candidates into delegates, follow their dependencies and
feed their status back to the proxies.`,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			verflag.PrintAndExitIfRequested()
			if err := o.Validate(); err != nil {
				return err
			}
			logger, flush, err := o.Logging.Setup()
			if err != nil {
				return err
			}
			defer flush()
			// The first SIGTERM or SIGINT starts a graceful shutdown, a second
			// one exits at once.
			ctx := genericapiserver.SetupSignalContext()
			return RunWithServers(klog.NewContext(ctx, logger), o, servers, factories...)
		},
	}
	o.AddFlags(cmd.Flags())
	verflag.AddFlags(cmd.Flags())
	return cmd
}

// Run runs the delegator until ctx is done.
func Run(ctx context.Context, o *Options, factories ...ControllerFactory) error {
	return RunWithServers(ctx, o, nil, factories...)
}

// RunWithServers runs the delegator, with servers on this replica whether
// it leads or not, until ctx is done.
func RunWithServers(ctx context.Context, o *Options, servers []ServerFactory, factories ...ControllerFactory) error {
	logger := klog.FromContext(ctx)
	restConfig, err := o.restConfig()
	if err != nil {
		return fmt.Errorf("local cluster configuration: %w", err)
	}
	client, err := kubernetes.NewForConfig(targets.Protobuf(restConfig))
	if err != nil {
		return err
	}
	mcClient, err := versioned.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	d := &Delegator{
		Options:    o,
		RestConfig: restConfig,
		Client:     client,
		MCClient:   mcClient,
		Recorder:   broadcaster.NewRecorder(eventScheme(), corev1.EventSource{Component: "admiralty-delegator"}),
		Logger:     logger,
	}

	stopping := make(chan struct{})
	var electionChecker *leaderelection.HealthzAdaptor
	checks := []healthz.HealthChecker{healthz.PingHealthz}
	if o.LeaderElection.LeaderElect {
		electionChecker = leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)
		checks = append(checks, electionChecker)
	}
	mux := http.NewServeMux()
	healthz.InstallHandler(mux, checks...)
	healthz.InstallLivezHandler(mux, checks...)
	healthz.InstallReadyzHandler(mux, append(checks, healthz.NewShutdownHealthz(stopping))...)
	mux.Handle("/metrics", legacyregistry.Handler())
	if o.Profiling {
		// Go's profiles (heap, goroutine, CPU...), as --profiling of the
		// upstream components serves them.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	listener, err := net.Listen("tcp", o.HealthAddr)
	if err != nil {
		return fmt.Errorf("--health-addr: %w", err)
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(listener) }()
	logger.Info("Serving health and metrics", "address", listener.Addr().String(), "clusterName", o.ClusterName)

	// Controllers run under their own context, cancelled first at shutdown,
	// so that they have stopped before the lease is released and a standby
	// starts acting.
	controllersCtx, stopControllers := context.WithCancel(ctx)
	defer stopControllers()
	var wg sync.WaitGroup
	runErr := make(chan error, 1)
	fail := func(err error) {
		select {
		case runErr <- err:
		default:
		}
	}
	// Servers stop last, after the controllers and the lease release: the
	// API server may call this replica until it is gone.
	serversCtx, stopServers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServers()
	var serversWG sync.WaitGroup
	for _, f := range servers {
		srv, err := f(serversCtx, d)
		if err != nil {
			return err
		}
		serversWG.Go(func() {
			if err := srv.Start(serversCtx); err != nil && serversCtx.Err() == nil {
				logger.Error(err, "Server stopped", "server", srv.Name())
				fail(fmt.Errorf("server %s: %w", srv.Name(), err))
			}
		})
	}

	lead := func(electionCtx context.Context) {
		ctx, cancel := context.WithCancel(controllersCtx)
		defer cancel()
		// Leadership ends with the election context.
		stop := context.AfterFunc(electionCtx, cancel)
		defer stop()
		logger.Info("Starting controllers", "count", len(factories))
		// Fresh caches for each term of leadership.
		// No cache keeps managed fields.
		trim := informers.WithTransform(targets.DropManagedFields)
		d.KubeInformers = informers.NewSharedInformerFactoryWithOptions(client, 0, trim)
		d.MCInformers = mcinformers.NewSharedInformerFactoryWithOptions(mcClient, 0, mcinformers.WithTransform(targets.DropManagedFields))
		d.Delegates = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(trimDelegate),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = v1alpha1.LabelParentClusterName }))
		d.Proxies = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(TrimProxy),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = v1alpha1.LabelIsProxy + "=true" }))
		d.Targets = targets.NewRegistry(targets.Options{
			SourceClusterName: o.ClusterName,
			LocalConfig:       restConfig,
			QPS:               o.KubeAPIQPS,
			Burst:             o.KubeAPIBurst,
			UserAgent:         "admiralty-delegator/" + o.ClusterName,
			WriteStatus:       true,
			Recorder:          d.Recorder,
			HealthInterval:    o.TargetHealthInterval,
			ChaperonTransform: TrimSourceChaperon,
			Kubeconfigs:       o.Kubeconfigs,
		}, client, mcClient, d.MCInformers)
		// The registry runs like a controller, before the ones that use it.
		factories := append([]ControllerFactory{func(context.Context, *Delegator) (Controller, error) { return d.Targets, nil }}, factories...)
		for _, f := range factories {
			c, err := f(ctx, d)
			if err != nil {
				fail(err)
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.Start(ctx); err != nil && ctx.Err() == nil {
					logger.Error(err, "Controller stopped", "controller", c.Name())
					fail(fmt.Errorf("controller %s: %w", c.Name(), err))
				}
			}()
		}
		d.KubeInformers.Start(ctx.Done())
		d.MCInformers.Start(ctx.Done())
		d.Delegates.Start(ctx.Done())
		d.Proxies.Start(ctx.Done())
		<-ctx.Done()
		d.KubeInformers.Shutdown()
		d.MCInformers.Shutdown()
		d.Delegates.Shutdown()
		d.Proxies.Shutdown()
	}

	electionCtx, stopElection := context.WithCancel(context.Background())
	defer stopElection()
	// electorDone closes once the elector has returned, which is after it
	// released the lease (ReleaseOnCancel).
	electorDone := make(chan struct{})
	if o.LeaderElection.LeaderElect {
		elector, err := o.elector(restConfig, d.Recorder, electionChecker, lead, func() {
			// Losing the lease while the process is not stopping means another
			// replica may already act: stop everything now, as the upstream
			// components do, rather than risk two leaders.
			if controllersCtx.Err() == nil {
				fail(errors.New("leader election lost"))
			}
		})
		if err != nil {
			return err
		}
		go func() { defer close(electorDone); elector.Run(electionCtx) }()
	} else {
		close(electorDone)
		go lead(electionCtx)
	}

	select {
	case <-ctx.Done():
		err = nil
	case err = <-runErr:
	case err = <-serveErr:
		err = fmt.Errorf("health server: %w", err)
	}
	logger.Info("Shutting down", "reason", shutdownReason(err))
	close(stopping)
	stopControllers()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		stopElection()
		<-electorDone
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(o.ShutdownTimeout):
		logger.Info("Shutdown did not finish in time", "timeout", o.ShutdownTimeout)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stopServers()
	serversDone := make(chan struct{})
	go func() { serversWG.Wait(); close(serversDone) }()
	select {
	case <-serversDone:
	case <-shutdownCtx.Done():
	}
	_ = server.Shutdown(shutdownCtx)
	return err
}

// eventScheme knows the built-in kinds and the multicluster kinds, so that
// Events can be recorded on Targets, Sources and PodChaperons too.
func eventScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(scheme.AddToScheme(s))
	utilruntime.Must(mcscheme.AddToScheme(s))
	return s
}

func shutdownReason(err error) string {
	if err == nil {
		return "signal"
	}
	return err.Error()
}

func (o *Options) restConfig() (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if o.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, err
	}
	cfg.QPS = o.KubeAPIQPS
	cfg.Burst = o.KubeAPIBurst
	cfg.UserAgent = "admiralty-delegator"
	return cfg, nil
}

func (o *Options) elector(cfg *rest.Config, recorder record.EventRecorder, checker *leaderelection.HealthzAdaptor, lead func(context.Context), lost func()) (*leaderelection.LeaderElector, error) {
	hostname, err := os.Hostname()
	if err != nil {
		return nil, err
	}
	id := hostname + "_" + uuid.NewString()
	le := o.LeaderElection
	ns := le.ResourceNamespace
	if ns == "" {
		ns = o.Namespace
	}
	lock, err := resourcelock.NewFromKubeconfig(le.ResourceLock, ns, le.ResourceName,
		resourcelock.ResourceLockConfig{Identity: id, EventRecorder: recorder}, cfg, le.RenewDeadline.Duration)
	if err != nil {
		return nil, err
	}
	return leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   le.LeaseDuration.Duration,
		RenewDeadline:   le.RenewDeadline.Duration,
		RetryPeriod:     le.RetryPeriod.Duration,
		ReleaseOnCancel: true,
		WatchDog:        checker,
		Name:            le.ResourceName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: lead,
			OnStoppedLeading: lost,
		},
	})
}

// TrimProxy is the transform of the proxies' cache: its readers (the
// feedback, which writes a proxy's status with a patch, see
// feedback.StatusPatch; the services controller, by labels) read a proxy's
// metadata, spec.nodeName and status. Nothing updates a proxy from this
// cache, so the rest of the spec and the original manifest, which the
// proxy's annotation holds for the scheduler (half of a small pod's size),
// are left out, as is kubectl's last-applied configuration.
func TrimProxy(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	trimToNode(p)
	delete(p.Annotations, v1alpha1.AnnotationSourcePodManifest)
	delete(p.Annotations, corev1.LastAppliedConfigAnnotation)
	return p, nil
}

// TrimSourceChaperon is the transform of the caches of this source's
// PodChaperons in its targets: their readers (the feedback, the follow
// controller, the virtual kubelet, the stats) read a chaperon's metadata
// and status, and of its spec only what follow.References reads: the
// environment of each container, the volumes and the image pull secrets,
// and the topology spread constraints, which the feedback gives a self
// target's delegate that it makes again.
// The rest of each container (image, command, resources, probes...) and of
// the spec is left out. Nothing updates a chaperon from this cache (the
// follow controller patches its annotations). The target's own chaperon
// controller, which makes the delegates, has a cache of its own.
func TrimSourceChaperon(obj any) (any, error) {
	ch, ok := obj.(*v1alpha1.PodChaperon)
	if !ok {
		return obj, nil
	}
	ch.ManagedFields = nil
	env := func(cs []corev1.Container) []corev1.Container {
		var out []corev1.Container
		for _, c := range cs {
			out = append(out, corev1.Container{Name: c.Name, Env: c.Env, EnvFrom: c.EnvFrom})
		}
		return out
	}
	var ephemeral []corev1.EphemeralContainer
	for _, c := range ch.Spec.EphemeralContainers {
		ephemeral = append(ephemeral, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: c.Name, Env: c.Env, EnvFrom: c.EnvFrom,
		}})
	}
	ch.Spec = corev1.PodSpec{
		InitContainers:            env(ch.Spec.InitContainers),
		Containers:                env(ch.Spec.Containers),
		EphemeralContainers:       ephemeral,
		Volumes:                   ch.Spec.Volumes,
		ImagePullSecrets:          ch.Spec.ImagePullSecrets,
		TopologySpreadConstraints: ch.Spec.TopologySpreadConstraints,
	}
	return ch, nil
}

// trimDelegate is the transform of the delegates' cache: its readers (the
// chaperon controller, which mirrors a delegate's status and reports its
// node; the delegates Roles, by name and owner) read a delegate's metadata,
// spec.nodeName and status, never the rest of its spec, which a chaperon
// holds anyway. Nothing updates a delegate from this cache.
func trimDelegate(obj any) (any, error) {
	if p, ok := obj.(*corev1.Pod); ok {
		trimToNode(p)
	}
	return obj, nil
}

// trimToNode drops a cached pod's managed fields and its spec but the node.
func trimToNode(p *corev1.Pod) {
	p.ManagedFields = nil
	p.Spec = corev1.PodSpec{NodeName: p.Spec.NodeName}
}
