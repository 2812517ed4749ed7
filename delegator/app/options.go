package app

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	componentbaseconfig "k8s.io/component-base/config"
	"k8s.io/component-base/config/options"

	"admiralty.io/multicluster-scheduler/logging"
	"admiralty.io/multicluster-scheduler/targets/kubeconfig"
)

// Options are the delegator's flags.
type Options struct {
	// Kubeconfig is the path of a kubeconfig for the local cluster; empty
	// means in-cluster configuration.
	Kubeconfig string
	// ClusterName identifies this cluster in the objects that the delegator
	// creates in other clusters, so that two sources never collide there.
	ClusterName string
	// Namespace is where the delegator runs; its leader Lease lives there.
	Namespace string
	// HealthAddr serves /healthz, /livez, /readyz and /metrics.
	HealthAddr string
	// KubeAPIQPS and KubeAPIBurst are the client rate limits, for the local
	// cluster and for every target.
	KubeAPIQPS   float32
	KubeAPIBurst int
	// Workers is how many objects each per-pod controller (chaperon,
	// feedback, follow) reconciles at once. Each reconcile waits on API
	// round trips, so the rate of a controller is about Workers divided
	// by a round trip: too few, and a burst of pods queues here while the
	// API server idles.
	Workers int
	// ShutdownTimeout bounds how long a graceful shutdown may take.
	ShutdownTimeout time.Duration
	// Profiling serves Go's profiles on HealthAddr, under /debug/pprof/.
	Profiling bool

	// TargetHealthInterval is how often each target is checked again and
	// its Ready condition refreshed.
	TargetHealthInterval time.Duration
	// VirtualNodeLeaseDuration is the Lease duration of virtual nodes: a
	// target that stops answering makes its node NotReady after it.
	VirtualNodeLeaseDuration time.Duration
	// UnreachableGracePeriod is how long a target may stay unreachable
	// before the proxies on its virtual node that a controller owns are
	// deleted (and recreated elsewhere by their controllers); a Target's
	// spec.unreachableGracePeriodSeconds overrides it.
	UnreachableGracePeriod time.Duration
	// ClusterSummaryInterval is the least time between two computations
	// (hence writes) of this cluster's ClusterSummary: node and pod events
	// within it are coalesced into one update.
	ClusterSummaryInterval time.Duration

	// WebhookAddr is where every replica serves the pod admission webhook
	// (HTTPS, with a certificate the delegator issues itself).
	WebhookAddr string
	// WebhookURL, when set, is how the API server reaches the webhook (a
	// URL in the MutatingWebhookConfiguration), e.g. for a delegator that
	// runs outside the cluster; otherwise WebhookService is.
	WebhookURL string
	// WebhookService is the namespace/name of the Service in front of the
	// replicas' WebhookAddr, for in-cluster installs.
	WebhookService string

	// KubeletAddr is where the leader serves the virtual nodes' kubelet
	// endpoint (HTTPS): the API server calls it for logs, exec, attach and
	// port-forward on proxy pods, which it relays to their delegates.
	KubeletAddr string
	// KubeletAdvertiseAddress is the IP that the virtual nodes advertise
	// (InternalIP, with KubeletAddr's port): the leader's own, since only
	// the leader serves.
	KubeletAdvertiseAddress string

	// Kubeconfigs is what the kubeconfigs of Targets' and ClusterTargets'
	// Secrets may contain and point at (--target-* and --cluster-target-*),
	// as the scheduler's AdmiraltyProxy args kubeconfigs.
	Kubeconfigs kubeconfig.Rules

	LeaderElection componentbaseconfig.LeaderElectionConfiguration
	Logging        *logging.Options
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "admiralty"
	}
	return &Options{
		Namespace:       ns,
		HealthAddr:      ":8080",
		KubeAPIQPS:      50,
		KubeAPIBurst:    100,
		Workers:         16,
		ShutdownTimeout: 30 * time.Second,

		TargetHealthInterval:     30 * time.Second,
		VirtualNodeLeaseDuration: 40 * time.Second,
		UnreachableGracePeriod:   5 * time.Minute,
		ClusterSummaryInterval:   time.Second,
		WebhookAddr:              ":9443",
		WebhookService:           "admiralty/admiralty-webhook",
		KubeletAddr:              ":10250",
		KubeletAdvertiseAddress:  kubeletAdvertiseAddress(),
		LeaderElection: componentbaseconfig.LeaderElectionConfiguration{
			LeaderElect:   true,
			LeaseDuration: metav1.Duration{Duration: 15 * time.Second},
			RenewDeadline: metav1.Duration{Duration: 10 * time.Second},
			RetryPeriod:   metav1.Duration{Duration: 2 * time.Second},
			ResourceLock:  resourcelock.LeasesResourceLock,
			ResourceName:  "admiralty-delegator",
		},
		Logging: logging.NewOptions(),
	}
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to a kubeconfig for the local cluster. Empty: in-cluster configuration.")
	fs.StringVar(&o.ClusterName, "cluster-name", o.ClusterName, "Name of this cluster, recorded on the objects the delegator creates in other clusters (required, a DNS label).")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "Namespace the delegator runs in (default $POD_NAMESPACE, else admiralty); holds its leader Lease.")
	fs.StringVar(&o.HealthAddr, "health-addr", o.HealthAddr, "Address serving /healthz, /livez, /readyz and /metrics.")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "Client QPS limit, for the local cluster and each target.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Client burst limit, for the local cluster and each target.")
	fs.IntVar(&o.Workers, "workers", o.Workers, "Objects each per-pod controller (chaperon, feedback, follow) reconciles at once.")
	fs.BoolVar(&o.Profiling, "profiling", o.Profiling, "Serve Go's profiles (heap, goroutines, CPU) on --health-addr under /debug/pprof/; off by default, since that address is not authenticated.")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "How long a graceful shutdown (SIGTERM) may take before the process exits anyway.")
	fs.DurationVar(&o.TargetHealthInterval, "target-health-interval", o.TargetHealthInterval, "How often each Target and ClusterTarget is checked again (Ready condition).")
	fs.DurationVar(&o.VirtualNodeLeaseDuration, "virtual-node-lease-duration", o.VirtualNodeLeaseDuration, "Lease duration of virtual nodes, renewed every quarter of it while their target answers; the node lifecycle controller marks the node NotReady when it lapses.")
	fs.DurationVar(&o.UnreachableGracePeriod, "unreachable-grace-period", o.UnreachableGracePeriod, "How long a target may stay unreachable before the proxies on its virtual node that a controller owns are deleted, so that their controllers recreate them in other targets (per target: spec.unreachableGracePeriodSeconds).")
	fs.DurationVar(&o.ClusterSummaryInterval, "cluster-summary-interval", o.ClusterSummaryInterval, "Least time between two updates of this cluster's ClusterSummary; node and pod changes within it are coalesced.")
	fs.StringVar(&o.WebhookAddr, "webhook-addr", o.WebhookAddr, "Address where every replica serves the pod admission webhook (HTTPS; the certificate is issued by the delegator and kept in a Secret of --namespace).")
	fs.StringVar(&o.WebhookURL, "webhook-url", o.WebhookURL, "URL the API server calls the webhook at (https://HOST:PORT/mutate-pods), for a delegator outside the cluster. Empty: --webhook-service.")
	fs.StringVar(&o.WebhookService, "webhook-service", o.WebhookService, "namespace/name of the Service in front of the delegator's webhook port (443 on the Service), used when --webhook-url is empty.")
	fs.StringVar(&o.KubeletAddr, "kubelet-addr", o.KubeletAddr, "Address where the leader serves the virtual nodes' kubelet endpoint (HTTPS, self-signed): logs, exec, attach and port-forward on proxy pods.")
	fs.StringVar(&o.KubeletAdvertiseAddress, "kubelet-advertise-address", o.KubeletAdvertiseAddress, "IP the virtual nodes advertise as InternalIP, where the API server reaches --kubelet-addr's port (default $POD_IP, else 127.0.0.1).")
	for _, k := range []struct {
		prefix, kind string
		p            *kubeconfig.Policy
	}{{"target", "namespaced Targets", &o.Kubeconfigs.Targets}, {"cluster-target", "ClusterTargets", &o.Kubeconfigs.ClusterTargets}} {
		fs.BoolVar(&k.p.AllowInsecureTLS, k.prefix+"-allow-insecure-tls", k.p.AllowInsecureTLS, "Accept insecure-skip-tls-verify (and http:// servers) in the kubeconfigs of "+k.kind+". Same as the scheduler's AdmiraltyProxy args.")
		fs.BoolVar(&k.p.AllowProxyURL, k.prefix+"-allow-proxy-url", k.p.AllowProxyURL, "Accept proxy-url in the kubeconfigs of "+k.kind+". Same as the scheduler's AdmiraltyProxy args.")
		fs.StringSliceVar(&k.p.Servers, k.prefix+"-servers", k.p.Servers, "Allow-list of the servers that the kubeconfigs of "+k.kind+" may point at: IPs, CIDRs (checked at each connection, after name resolution), host names and *.DOMAIN. Empty: any, but link-local and cloud metadata addresses. Same as the scheduler's AdmiraltyProxy args.")
	}
	options.BindLeaderElectionFlags(&o.LeaderElection, fs)
	o.Logging.AddFlags(fs)
}

// Validate checks the flag values and says which one is wrong.
func (o *Options) Validate() error {
	if o.ClusterName == "" {
		return fmt.Errorf("--cluster-name is required")
	}
	if errs := validation.IsDNS1123Label(o.ClusterName); len(errs) > 0 {
		return fmt.Errorf("--cluster-name %q: %v", o.ClusterName, errs)
	}
	if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
		return fmt.Errorf("--namespace %q: %v", o.Namespace, errs)
	}
	if o.KubeAPIQPS <= 0 || o.KubeAPIBurst <= 0 {
		return fmt.Errorf("--kube-api-qps and --kube-api-burst must be positive")
	}
	if o.Workers < 1 {
		return fmt.Errorf("--workers must be at least 1")
	}
	if o.TargetHealthInterval < time.Second {
		return fmt.Errorf("--target-health-interval must be at least 1s")
	}
	if o.UnreachableGracePeriod < 0 {
		return fmt.Errorf("--unreachable-grace-period must not be negative")
	}
	if o.ClusterSummaryInterval <= 0 {
		return fmt.Errorf("--cluster-summary-interval must be positive")
	}
	if o.VirtualNodeLeaseDuration < 4*time.Second {
		return fmt.Errorf("--virtual-node-lease-duration must be at least 4s")
	}
	if err := o.validateWebhook(); err != nil {
		return err
	}
	if err := o.Kubeconfigs.Validate(); err != nil {
		return fmt.Errorf("--target-servers or --cluster-target-servers: %w", err)
	}
	if _, err := o.KubeletPort(); err != nil {
		return err
	}
	if net.ParseIP(o.KubeletAdvertiseAddress) == nil {
		return fmt.Errorf("--kubelet-advertise-address %q: want an IP", o.KubeletAdvertiseAddress)
	}
	le := o.LeaderElection
	if le.LeaderElect {
		if le.LeaseDuration.Duration <= le.RenewDeadline.Duration {
			return fmt.Errorf("--leader-elect-lease-duration (%s) must be greater than --leader-elect-renew-deadline (%s)", le.LeaseDuration.Duration, le.RenewDeadline.Duration)
		}
		if le.RenewDeadline.Duration <= le.RetryPeriod.Duration {
			return fmt.Errorf("--leader-elect-renew-deadline (%s) must be greater than --leader-elect-retry-period (%s)", le.RenewDeadline.Duration, le.RetryPeriod.Duration)
		}
		if le.ResourceLock != resourcelock.LeasesResourceLock {
			return fmt.Errorf("--leader-elect-resource-lock must be %q", resourcelock.LeasesResourceLock)
		}
	}
	return o.Logging.Validate()
}

func (o *Options) validateWebhook() error {
	if _, _, err := net.SplitHostPort(o.WebhookAddr); err != nil {
		return fmt.Errorf("--webhook-addr %q: %v", o.WebhookAddr, err)
	}
	if o.WebhookURL != "" {
		u, err := url.Parse(o.WebhookURL)
		if err != nil {
			return fmt.Errorf("--webhook-url: %v", err)
		}
		// What the API server accepts in a webhook's clientConfig.url.
		if u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("--webhook-url %q: want https://HOST[:PORT]/PATH, without user, query or fragment", o.WebhookURL)
		}
		return nil
	}
	ns, name, ok := strings.Cut(o.WebhookService, "/")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1035Label(name)) > 0 {
		return fmt.Errorf("--webhook-service %q: want NAMESPACE/NAME of a Service", o.WebhookService)
	}
	return nil
}

// kubeletAdvertiseAddress defaults to the pod's IP (downward API), where
// the API server can reach this replica.
func kubeletAdvertiseAddress() string {
	if ip := os.Getenv("POD_IP"); ip != "" {
		return ip
	}
	return "127.0.0.1"
}

// KubeletPort is the port of --kubelet-addr, which the virtual nodes
// advertise.
func (o *Options) KubeletPort() (int32, error) {
	_, p, err := net.SplitHostPort(o.KubeletAddr)
	if err != nil {
		return 0, fmt.Errorf("--kubelet-addr %q: %v", o.KubeletAddr, err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return 0, fmt.Errorf("--kubelet-addr %q: want a port number", o.KubeletAddr)
	}
	return int32(port), nil
}
