// Package targets keeps the live set of target clusters of this (source)
// cluster: it watches Targets and ClusterTargets, resolves their kubeconfig
// Secrets, and holds one connection per target (clients and the informers
// that consumers share). Adding, changing or deleting a Target takes effect
// at once, without a restart. The delegator and the scheduler plugins each
// run a Registry; only the delegator's writes Target status.
package targets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	mcinformers "admiralty.io/multicluster-scheduler/apis/generated/informers/externalversions"
	mclisters "admiralty.io/multicluster-scheduler/apis/generated/listers/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/controller"
	"admiralty.io/multicluster-scheduler/names"
	"admiralty.io/multicluster-scheduler/targets/kubeconfig"
)

// Ref names a Target (Namespace set) or a ClusterTarget (Namespace empty).
type Ref struct {
	Namespace string
	Name      string
}

// String is the work-queue key of the Ref: "NS/NAME" or "NAME".
func (r Ref) String() string {
	if r.Namespace == "" {
		return r.Name
	}
	return r.Namespace + "/" + r.Name
}

// IsCluster tells whether the Ref names a ClusterTarget.
func (r Ref) IsCluster() bool { return r.Namespace == "" }

// VirtualNodeKeys maps a Target or ClusterTarget (an informer's object) to
// the name of its virtual node, for controllers keyed by node name.
func VirtualNodeKeys(obj any) []string {
	switch t := obj.(type) {
	case *v1alpha1.Target:
		return []string{Ref{Namespace: t.Namespace, Name: t.Name}.VirtualNodeName()}
	case *v1alpha1.ClusterTarget:
		return []string{Ref{Name: t.Name}.VirtualNodeName()}
	}
	return nil
}

// VirtualNodeName is the name of the node that stands for the target:
// admiralty-namespace-NS-NAME or admiralty-cluster-NAME, as in the original
// project, cut with a hash when longer than a node name may be.
func (r Ref) VirtualNodeName() string {
	if r.IsCluster() {
		return names.Fit("admiralty-cluster-"+r.Name, names.MaxSubdomain)
	}
	return names.Fit("admiralty-namespace-"+r.Namespace+"-"+r.Name, names.MaxSubdomain)
}

// Target is a live connection to one target cluster. It is immutable: a
// change of its Target object replaces it with a new one.
type Target struct {
	Ref Ref
	// Self: the target is this very cluster.
	Self bool
	// Scope is the namespace the source may act in, in the target: the
	// Target's namespace, or empty (all namespaces) for a ClusterTarget.
	Scope string

	Config *rest.Config
	Client kubernetes.Interface
	// Dynamic is a dynamic client of Config.
	Dynamic dynamic.Interface
	// WatchClient is Client without the request timeout, for informers.
	WatchClient kubernetes.Interface
	// MCClient: a self target's PodChaperons are its delegates
	// (SelfChaperons).
	MCClient versioned.Interface
	// Chaperons informs on the PodChaperons that this source created in the
	// target (label LabelParentClusterName), within Scope.
	Chaperons mcinformers.SharedInformerFactory
	// Summaries informs on the target's ClusterSummary.
	Summaries mcinformers.SharedInformerFactory

	fingerprint string
	ctx         context.Context
	cancel      context.CancelFunc

	healthMu sync.Mutex
	health   Health
}

// Health is the last thing known of whether a target answers: the virtual
// node's ping (delegator/virtualnode) reports it every quarter of the
// node's Lease duration, and the registry's own check when no ping ran.
type Health struct {
	// Checked: zero if never checked.
	Checked time.Time
	// Err of the last check; nil if the target answered.
	Err error
	// Since is when the target started answering, or stopped.
	Since time.Time
}

// Health returns the target's last known health.
func (t *Target) Health() Health {
	t.healthMu.Lock()
	defer t.healthMu.Unlock()
	return t.health
}

// Unreachable tells whether the last check of the target failed.
func (t *Target) Unreachable() bool {
	h := t.Health()
	return !h.Checked.IsZero() && h.Err != nil
}

// setHealth records a check; it tells whether reachability changed.
func (t *Target) setHealth(err error) bool {
	t.healthMu.Lock()
	defer t.healthMu.Unlock()
	now := time.Now()
	changed := t.health.Checked.IsZero() || (t.health.Err == nil) != (err == nil)
	if changed {
		t.health.Since = now
	}
	t.health.Checked, t.health.Err = now, err
	return changed
}

// Context is done when the target is removed or replaced.
func (t *Target) Context() context.Context { return t.ctx }

// Summary returns the target's ClusterSummary, if known. A cluster has one.
func (t *Target) Summary() *v1alpha1.ClusterSummary {
	list, err := t.Summaries.Multicluster().V1alpha1().ClusterSummaries().Lister().List(labels.Everything())
	if err != nil || len(list) == 0 {
		return nil
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return list[0]
}

// StartInformers starts the informers that consumers registered with the
// target's factories; call it after registering.
func (t *Target) StartInformers() {
	t.Chaperons.Start(t.ctx.Done())
	t.Summaries.Start(t.ctx.Done())
}

// Handler is told of targets as they come and go. A changed target is
// removed, then added anew. Calls are serialized.
type Handler interface {
	TargetAdded(t *Target)
	TargetRemoved(t *Target)
}

// Cleaner is a Handler that also removes what it made in a target when
// the Target is deleted, before its finalizer goes (the target is still
// connected).
type Cleaner interface {
	CleanupTarget(ctx context.Context, t *Target) error
}

// Options of a Registry.
type Options struct {
	// SourceClusterName is this cluster's name; it selects this source's
	// PodChaperons in targets.
	SourceClusterName string
	// LocalConfig connects to this cluster, used by self targets.
	LocalConfig *rest.Config
	// QPS and Burst are the client limits of each target connection.
	QPS   float32
	Burst int
	// UserAgent of the target clients.
	UserAgent string
	// WriteStatus makes the registry check each target's health and report
	// it in the Target's status (Ready condition) and Events. Only one
	// process per cluster should: the delegator's leader.
	WriteStatus bool
	Recorder    record.EventRecorder
	// HealthInterval is how often a connected target is checked again
	// (WriteStatus only).
	HealthInterval time.Duration
	// ChaperonTransform trims the PodChaperons the targets' informers
	// keep; DropManagedFields when nil. A process that reads only some
	// fields keeps only those.
	ChaperonTransform cache.TransformFunc
	// Kubeconfigs is what the kubeconfigs of Targets' and ClusterTargets'
	// Secrets may contain and point at. The scheduler and the delegator
	// must be given the same rules.
	Kubeconfigs kubeconfig.Rules
}

// Registry is the live set of targets.
type Registry struct {
	opts       Options
	localKube  kubernetes.Interface
	localMC    versioned.Interface
	targets    mclisters.TargetLister
	clusters   mclisters.ClusterTargetLister
	controller *controller.Controller

	mu     sync.Mutex
	live   map[Ref]*Target
	byNode map[string]*Target
	// lastGood is each Target's last working connection, kept until the
	// Target is gone: deleting a namespace deletes a Target's kubeconfig
	// Secret as it deletes the Target, and the Target's cleanup in the
	// target still needs the credentials.
	lastGood map[Ref]lastConnection
	// refusals is the last refusal logged per Target where no status is
	// written (the scheduler), so that each is logged once, not at every
	// recheck.
	refusals       map[Ref]string
	handlers       []Handler
	healthHandlers []func(*Target)
}

// NewRegistry returns a registry fed by the given local informer factory
// (which the caller starts).
func NewRegistry(opts Options, localKube kubernetes.Interface, localMC versioned.Interface, factory mcinformers.SharedInformerFactory) *Registry {
	if opts.HealthInterval == 0 {
		opts.HealthInterval = 30 * time.Second
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "admiralty"
	}
	r := &Registry{
		opts:      opts,
		localKube: localKube,
		localMC:   localMC,
		live:      map[Ref]*Target{},
		byNode:    map[string]*Target{},
		lastGood:  map[Ref]lastConnection{},
		refusals:  map[Ref]string{},
	}
	r.controller = controller.New("targets", 2, r.reconcile)
	ti := factory.Multicluster().V1alpha1().Targets()
	ci := factory.Multicluster().V1alpha1().ClusterTargets()
	r.targets, r.clusters = ti.Lister(), ci.Lister()
	// A ClusterTarget's key has no namespace and a Target's has one, so one
	// queue serves both.
	_, _ = ti.Informer().AddEventHandler(r.controller.Handler())
	_, _ = ci.Informer().AddEventHandler(r.controller.Handler())
	r.controller.WaitFor(ti.Informer().HasSynced, ci.Informer().HasSynced)
	return r
}

// Name of the registry's control loop.
func (r *Registry) Name() string { return r.controller.Name() }

// Start runs the registry until ctx is done, then closes every connection.
func (r *Registry) Start(ctx context.Context) error {
	err := r.controller.Start(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	for ref, t := range r.live {
		r.removeLocked(ref, t)
	}
	return err
}

// Subscribe adds a handler and tells it of the targets already live.
func (r *Registry) Subscribe(h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handlers = append(r.handlers, h)
	for _, t := range r.sortedLocked() {
		h.TargetAdded(t)
	}
}

// OnHealthChange registers f, called (from the reporter's goroutine) when a
// live target starts or stops answering.
func (r *Registry) OnHealthChange(f func(*Target)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.healthHandlers = append(r.healthHandlers, f)
}

// ReportHealth records the result of a check of t (nil: it answered). A
// change of reachability is handed to the OnHealthChange handlers and, with
// WriteStatus, updates the Target's Ready condition at once: the virtual
// node's ping feeds the condition, so the target is not checked twice.
func (r *Registry) ReportHealth(t *Target, err error) {
	if !t.setHealth(err) {
		return
	}
	r.mu.Lock()
	live := r.live[t.Ref] == t
	handlers := append([]func(*Target){}, r.healthHandlers...)
	r.mu.Unlock()
	if !live {
		return
	}
	for _, f := range handlers {
		f(t)
	}
	if r.opts.WriteStatus {
		r.controller.EnqueueKey(t.Ref.String())
	}
}

// Get returns the live target of ref, or nil.
func (r *Registry) Get(ref Ref) *Target {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live[ref]
}

// ByVirtualNode returns the live target whose virtual node is name, or nil.
func (r *Registry) ByVirtualNode(name string) *Target {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byNode[name]
}

// List returns the live targets, sorted by Ref.
func (r *Registry) List() []*Target {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sortedLocked()
}

func (r *Registry) sortedLocked() []*Target {
	out := make([]*Target, 0, len(r.live))
	for _, t := range r.live {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref.String() < out[j].Ref.String() })
	return out
}

func (r *Registry) reconcile(ctx context.Context, key string) (controller.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controller.Result{}, nil
	}
	ref := Ref{Namespace: ns, Name: name}
	obj, spec, err := r.lookup(ref)
	if apierrors.IsNotFound(err) {
		r.remove(ref)
		r.mu.Lock()
		delete(r.lastGood, ref)
		delete(r.refusals, ref)
		r.mu.Unlock()
		return controller.Result{}, nil
	}
	if err != nil {
		return controller.Result{}, err
	}
	if obj.GetDeletionTimestamp() != nil {
		return r.finalize(ctx, ref, obj)
	}
	cfg, fingerprint, reason, cfgErr := r.connectionConfig(ctx, ref, spec)
	if cfgErr != nil {
		// Bad input: no connection, a clear condition; the Target (or its
		// Secret, through the periodic recheck) must change to fix it.
		r.refuse(ctx, ref, obj, reason, cfgErr.Error())
		return controller.Result{RequeueAfter: r.opts.HealthInterval}, nil
	}
	if r.opts.WriteStatus && !hasFinalizer(obj) {
		// Before any side effect in the target: deleting the Target must
		// first remove what this source made there. A Target that was
		// never connected has nothing there, and goes at once.
		if err := r.setFinalizer(ctx, obj, true); err != nil {
			return controller.Result{}, err
		}
	}
	t, err := r.connect(ctx, ref, spec, cfg, fingerprint)
	if err != nil {
		r.refuse(ctx, ref, obj, ReasonInvalidKubeconfig, fmt.Sprintf("cannot build a client from the kubeconfig: %v", err))
		return controller.Result{RequeueAfter: r.opts.HealthInterval}, nil
	}
	r.mu.Lock()
	delete(r.refusals, ref)
	r.mu.Unlock()
	if !r.opts.WriteStatus {
		return controller.Result{}, nil
	}
	// A check newer than the health interval (the virtual node's ping)
	// stands; otherwise check now.
	err = t.Health().Err
	if h := t.Health(); h.Checked.IsZero() || time.Since(h.Checked) >= r.opts.HealthInterval {
		err = Check(ctx, t)
		r.ReportHealth(t, err)
	}
	if err != nil {
		r.report(ctx, obj, metav1.ConditionFalse, ReasonOf(err), err.Error())
	} else {
		r.report(ctx, obj, metav1.ConditionTrue, ReasonConnected, "the target answers and authorizes this source")
	}
	return controller.Result{RequeueAfter: r.opts.HealthInterval}, nil
}

// Reasons of the Ready condition of Targets and ClusterTargets.
const (
	ReasonConnected         = "Connected"
	ReasonUnreachable       = "Unreachable"
	ReasonInvalidSpec       = "InvalidSpec"
	ReasonSecretNotFound    = "SecretNotFound"
	ReasonInvalidKubeconfig = "InvalidKubeconfig"
	ReasonNamespaceNotFound = "NamespaceNotFound"
)

// Finalizer on Targets and ClusterTargets, so that deleting one first
// removes this source's PodChaperons (and so delegates) in the target and
// its proxies bound to the virtual node, which their controllers recreate
// elsewhere: no orphan on either side.
const Finalizer = v1alpha1.GroupName + "/cleanup"

// cleanupDeadline bounds the cleanup of an unreachable target: the Target
// goes anyway, with an Event saying what may be left there.
const cleanupDeadline = 2 * time.Minute

// Reasons of cleanup Events.
const (
	ReasonCleanedUp        = "CleanedUp"
	ReasonCleanupAbandoned = "CleanupAbandoned"
)

func hasFinalizer(obj metav1.Object) bool {
	for _, f := range obj.GetFinalizers() {
		if f == Finalizer {
			return true
		}
	}
	return false
}

// finalize handles a Target being deleted.
func (r *Registry) finalize(ctx context.Context, ref Ref, obj metav1.Object) (controller.Result, error) {
	if !r.opts.WriteStatus || !hasFinalizer(obj) {
		// The scheduler's registry just stops using the target.
		r.remove(ref)
		return controller.Result{}, nil
	}
	logger := klog.FromContext(ctx)
	t := r.Get(ref)
	if t == nil {
		// Its Secret went first (a namespace being deleted): clean up with
		// the credentials that last worked.
		r.mu.Lock()
		lg, ok := r.lastGood[ref]
		r.mu.Unlock()
		if ok {
			logger.Info("Reconnecting to a deleted target with its last working credentials, to clean up", "target", ref.String())
			// It connected before, with these very credentials.
			t, _ = r.connect(ctx, ref, lg.spec, rest.CopyConfig(lg.cfg), lg.fingerprint)
		}
	}
	var err error
	if t == nil {
		err = fmt.Errorf("the target is not connected, and this process has no credentials that worked for it")
	} else {
		err = r.cleanup(ctx, t)
	}
	if err != nil {
		if time.Since(obj.GetDeletionTimestamp().Time) < cleanupDeadline {
			logger.Info("Cleanup of a deleted target failed, retrying", "target", ref.String(), "err", err.Error())
			return controller.Result{RequeueAfter: 5 * time.Second}, nil
		}
		r.event(obj, metav1.ConditionFalse, ReasonCleanupAbandoned,
			fmt.Sprintf("could not remove this source's PodChaperons from the target within %s (%v); delegates may be left there", cleanupDeadline, err))
	} else {
		r.event(obj, metav1.ConditionTrue, ReasonCleanedUp, "removed this source's PodChaperons from the target and the proxies bound to its virtual node")
	}
	// Proxies on the virtual node are deleted even when the target is
	// gone, so that their controllers recreate them elsewhere.
	if err := r.deleteProxies(ctx, ref); err != nil {
		return controller.Result{}, err
	}
	r.remove(ref)
	if err := r.setFinalizer(ctx, obj, false); err != nil {
		return controller.Result{}, err
	}
	r.mu.Lock()
	delete(r.lastGood, ref)
	r.mu.Unlock()
	return controller.Result{}, nil
}

// lastConnection is what connect was given.
type lastConnection struct {
	spec        targetSpec
	cfg         *rest.Config
	fingerprint string
}

// cleanup deletes this source's PodChaperons in the target's scope.
func (r *Registry) cleanup(ctx context.Context, t *Target) error {
	client := t.MCClient.MulticlusterV1alpha1().PodChaperons(t.Scope)
	list, err := client.List(ctx, metav1.ListOptions{LabelSelector: r.chaperonSelector()})
	if err != nil {
		return describe(err)
	}
	for _, c := range list.Items {
		if err := client.Delete(ctx, c.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	r.mu.Lock()
	handlers := append([]Handler(nil), r.handlers...)
	r.mu.Unlock()
	for _, h := range handlers {
		if c, ok := h.(Cleaner); ok {
			if err := c.CleanupTarget(ctx, t); err != nil {
				return describe(err)
			}
		}
	}
	return nil
}

// deleteProxies deletes the pods bound to the target's virtual node, with
// no grace period: nothing runs them any more.
func (r *Registry) deleteProxies(ctx context.Context, ref Ref) error {
	pods, err := r.localKube.CoreV1().Pods(ref.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + ref.VirtualNodeName()})
	if err != nil {
		return err
	}
	zero := int64(0)
	for _, p := range pods.Items {
		err := r.localKube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// setFinalizer adds or removes Finalizer, by a JSON merge patch on the
// finalizers alone.
func (r *Registry) setFinalizer(ctx context.Context, obj metav1.Object, add bool) error {
	var finalizers []string
	for _, f := range obj.GetFinalizers() {
		if f != Finalizer {
			finalizers = append(finalizers, f)
		}
	}
	if add {
		finalizers = append(finalizers, Finalizer)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"finalizers": finalizers, "resourceVersion": obj.GetResourceVersion(),
	}})
	if err != nil {
		return err
	}
	switch obj.(type) {
	case *v1alpha1.Target:
		_, err = r.localMC.MulticlusterV1alpha1().Targets(obj.GetNamespace()).Patch(ctx, obj.GetName(), types.MergePatchType, patch, metav1.PatchOptions{})
	case *v1alpha1.ClusterTarget:
		_, err = r.localMC.MulticlusterV1alpha1().ClusterTargets().Patch(ctx, obj.GetName(), types.MergePatchType, patch, metav1.PatchOptions{})
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// targetSpec is what Targets and ClusterTargets have in common.
type targetSpec struct {
	self            bool
	secretNamespace string
	secretName      string
	secretKey       string
}

func (r *Registry) lookup(ref Ref) (metav1.Object, targetSpec, error) {
	if ref.IsCluster() {
		ct, err := r.clusters.Get(ref.Name)
		if err != nil {
			return nil, targetSpec{}, err
		}
		s := targetSpec{self: ct.Spec.Self}
		if ks := ct.Spec.KubeconfigSecret; ks != nil {
			s.secretNamespace, s.secretName, s.secretKey = ks.Namespace, ks.Name, ks.Key
		}
		return ct, s, nil
	}
	t, err := r.targets.Targets(ref.Namespace).Get(ref.Name)
	if err != nil {
		return nil, targetSpec{}, err
	}
	s := targetSpec{self: t.Spec.Self, secretNamespace: t.Namespace}
	if ks := t.Spec.KubeconfigSecret; ks != nil {
		s.secretName, s.secretKey = ks.Name, ks.Key
	}
	return t, s, nil
}

// connectionConfig resolves the spec to a client configuration, and a
// fingerprint that changes when the connection must be made anew.
func (r *Registry) connectionConfig(ctx context.Context, ref Ref, spec targetSpec) (*rest.Config, string, string, error) {
	switch {
	case spec.self && spec.secretName != "":
		return nil, "", ReasonInvalidSpec, fmt.Errorf("spec.self and spec.kubeconfigSecret are mutually exclusive")
	case spec.self:
		return rest.CopyConfig(r.opts.LocalConfig), "self", "", nil
	case spec.secretName == "":
		return nil, "", ReasonInvalidSpec, fmt.Errorf("either spec.self or spec.kubeconfigSecret must be set")
	}
	key := spec.secretKey
	if key == "" {
		key = v1alpha1.DefaultKubeconfigSecretKey
	}
	secret, err := r.localKube.CoreV1().Secrets(spec.secretNamespace).Get(ctx, spec.secretName, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, "", ReasonSecretNotFound, fmt.Errorf("kubeconfig Secret %s/%s not found", spec.secretNamespace, spec.secretName)
		}
		return nil, "", ReasonSecretNotFound, fmt.Errorf("kubeconfig Secret %s/%s: %w", spec.secretNamespace, spec.secretName, err)
	}
	data, ok := secret.Data[key]
	if !ok || len(data) == 0 {
		return nil, "", ReasonInvalidKubeconfig, fmt.Errorf("kubeconfig Secret %s/%s has no key %q", spec.secretNamespace, spec.secretName, key)
	}
	cfg, err := kubeconfig.Parse(data, r.opts.Kubeconfigs.For(ref.IsCluster()))
	if err != nil {
		return nil, "", ReasonInvalidKubeconfig, fmt.Errorf("kubeconfig Secret %s/%s, key %q: %w", spec.secretNamespace, spec.secretName, key, err)
	}
	sum := sha256.Sum256(data)
	return cfg, "secret:" + hex.EncodeToString(sum[:]), "", nil
}

// connect returns the live target of ref, replacing it if its connection
// changed. It fails only if the clients cannot be built from cfg.
func (r *Registry) connect(ctx context.Context, ref Ref, spec targetSpec, cfg *rest.Config, fingerprint string) (*Target, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.live[ref]; ok && t.fingerprint == fingerprint {
		return t, nil
	}
	good := lastConnection{spec: spec, cfg: rest.CopyConfig(cfg), fingerprint: fingerprint}
	t, err := r.newTarget(ctx, ref, spec, cfg, fingerprint)
	if err != nil {
		return nil, err
	}
	if old, ok := r.live[ref]; ok {
		r.removeLocked(ref, old)
	}
	r.lastGood[ref] = good
	r.live[ref] = t
	r.byNode[ref.VirtualNodeName()] = t
	klog.FromContext(ctx).Info("Target connected", "target", ref.String(), "self", spec.self, "host", cfg.Host)
	for _, h := range r.handlers {
		h.TargetAdded(t)
	}
	t.StartInformers()
	return t, nil
}

// newTarget builds the clients and informer factories of a connection.
func (r *Registry) newTarget(ctx context.Context, ref Ref, spec targetSpec, cfg *rest.Config, fingerprint string) (*Target, error) {
	cfg.QPS, cfg.Burst, cfg.UserAgent = r.opts.QPS, r.opts.Burst, r.opts.UserAgent
	// Custom resources speak JSON only; a self target's configuration may
	// come from a component that asks for protobuf.
	cfg.ContentType, cfg.AcceptContentTypes = "", ""
	cfg.WarningHandlerWithContext = &onceWarnings{target: ref.String()}
	cfg.WarningHandler = nil
	// Bound every request, so that an unreachable target never blocks a
	// caller for long.
	cfg.Timeout = RequestTimeout
	cfg.Wrap(countErrors(ref.String()))
	t := &Target{Ref: ref, Self: spec.self, Scope: ref.Namespace, Config: cfg, fingerprint: fingerprint}
	var err error
	if t.Client, err = kubernetes.NewForConfig(Protobuf(cfg)); err != nil {
		return nil, err
	}
	if t.MCClient, err = versioned.NewForConfig(cfg); err != nil {
		return nil, err
	}
	// Watches must outlive the request timeout.
	watchCfg := rest.CopyConfig(cfg)
	watchCfg.Timeout = 0
	watchMC, err := versioned.NewForConfig(watchCfg)
	if err != nil {
		return nil, err
	}
	if t.WatchClient, err = kubernetes.NewForConfig(Protobuf(watchCfg)); err != nil {
		return nil, err
	}
	if t.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	var chaperonsMC versioned.Interface = watchMC
	if spec.self {
		// A self target's chaperons are its delegates (SelfChaperons).
		t.MCClient = SelfChaperons(t.MCClient, t.Client.CoreV1())
		chaperonsMC = SelfChaperons(watchMC, t.WatchClient.CoreV1())
	}
	transform := r.opts.ChaperonTransform
	if transform == nil {
		transform = DropManagedFields
	}
	t.Chaperons = mcinformers.NewSharedInformerFactoryWithOptions(chaperonsMC, 0,
		mcinformers.WithNamespace(t.Scope),
		mcinformers.WithTransform(transform),
		mcinformers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = r.chaperonSelector()
		}))
	t.Summaries = mcinformers.NewSharedInformerFactoryWithOptions(watchMC, 0, mcinformers.WithTransform(DropManagedFields))
	t.ctx, t.cancel = context.WithCancel(context.WithoutCancel(ctx))
	return t, nil
}

// RequestTimeout bounds each request to a target but watches.
const RequestTimeout = 15 * time.Second

// Protobuf returns a copy of cfg for built-in kinds, which the API
// servers encode and decode several times cheaper as protobuf than as
// JSON. Custom resources (chaperons, summaries) speak JSON only: their
// clients keep cfg.
func Protobuf(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return cfg
}

func (r *Registry) remove(ref Ref) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.live[ref]; ok {
		r.removeLocked(ref, t)
	}
}

func (r *Registry) removeLocked(ref Ref, t *Target) {
	delete(r.live, ref)
	delete(r.byNode, ref.VirtualNodeName())
	for _, h := range r.handlers {
		h.TargetRemoved(t)
	}
	t.cancel()
	t.Chaperons.Shutdown()
	t.Summaries.Shutdown()
}

// chaperonSelector selects the PodChaperons this source created in a
// target (label values are fitted to 63 characters, as MakeChaperon does).
func (r *Registry) chaperonSelector() string {
	return v1alpha1.LabelParentClusterName + "=" + names.Fit(r.opts.SourceClusterName, names.MaxLabel)
}

// Check asks the target whether it answers and authorizes this source, the
// way the source will use it: listing its PodChaperons in scope (which also
// proves the CRDs are installed there).
//
// Listing in a namespace that does not exist succeeds (with nothing): for
// a namespaced Target with no chaperon yet, a dry-run create tells whether
// its namespace exists in the target (ErrNamespaceNotFound).
func Check(ctx context.Context, t *Target) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := t.MCClient.MulticlusterV1alpha1().PodChaperons(t.Scope)
	list, err := client.List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return describe(err)
	}
	if t.Scope == "" || t.Self || len(list.Items) > 0 {
		// A self target's namespace is the Target's own.
		return nil
	}
	probe := &v1alpha1.PodChaperon{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "admiralty-namespace-check-"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "check", Image: "check"}}},
	}
	_, err = client.Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	var status apierrors.APIStatus
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: namespace %q does not exist in the target; a Target acts in the namespace of its name only: create it there (%v)", ErrNamespaceNotFound, t.Scope, err)
	case errors.As(err, &status):
		// Other refusals (admission, quota) say nothing of the namespace.
		return nil
	}
	// No answer (a timeout, a cancelled check): not a sign of health.
	return describe(err)
}

// ErrNamespaceNotFound: a namespaced Target's namespace does not exist in
// the target cluster.
var ErrNamespaceNotFound = errors.New("namespace not found in the target")

// ReasonOf is the Ready condition's reason for an error of Check.
func ReasonOf(err error) string {
	if errors.Is(err, ErrNamespaceNotFound) {
		return ReasonNamespaceNotFound
	}
	return ReasonUnreachable
}

// describe turns an API error into a sentence that says what to fix.
func describe(err error) error {
	switch {
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("unauthorized: the kubeconfig's credentials are rejected by the target (expired or revoked token?): %w", err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("forbidden: the source's identity lacks a Source/ClusterSource (or RoleBinding to multicluster-scheduler-source) in the target: %w", err)
	case apierrors.IsNotFound(err), meta.IsNoMatchError(err):
		return fmt.Errorf("the target does not serve multicluster.admiralty.io/v1alpha1 (is the project installed there?): %w", err)
	case strings.Contains(err.Error(), "x509"):
		return fmt.Errorf("TLS: the target's certificate does not match the kubeconfig's CA or server name: %w", err)
	}
	return err
}

// report sets the Ready condition of the Target or ClusterTarget, and emits
// an Event when it changes.
// refuse disconnects ref, whose Target cannot be connected to as it is,
// and says why: in its status where this registry writes it, else in the
// log, once per distinct refusal.
func (r *Registry) refuse(ctx context.Context, ref Ref, obj metav1.Object, reason, message string) {
	r.remove(ref)
	if r.opts.WriteStatus {
		r.report(ctx, obj, metav1.ConditionFalse, reason, message)
		return
	}
	r.mu.Lock()
	logged := r.refusals[ref] == reason+message
	r.refusals[ref] = reason + message
	r.mu.Unlock()
	if !logged {
		klog.FromContext(ctx).Info("Target refused", "target", ref.String(), "reason", reason, "message", message)
	}
}

func (r *Registry) report(ctx context.Context, obj metav1.Object, status metav1.ConditionStatus, reason, message string) {
	if !r.opts.WriteStatus {
		return
	}
	logger := klog.FromContext(ctx)
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, Status: status, Reason: reason, Message: message}
	var err error
	changed := false
	switch o := obj.(type) {
	case *v1alpha1.Target:
		o = o.DeepCopy()
		cond.ObservedGeneration = o.Generation
		changed = meta.SetStatusCondition(&o.Status.Conditions, cond)
		o.Status.VirtualNodeName = Ref{Namespace: o.Namespace, Name: o.Name}.VirtualNodeName()
		if changed {
			_, err = r.localMC.MulticlusterV1alpha1().Targets(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
			r.event(o, status, reason, message)
		}
	case *v1alpha1.ClusterTarget:
		o = o.DeepCopy()
		cond.ObservedGeneration = o.Generation
		changed = meta.SetStatusCondition(&o.Status.Conditions, cond)
		o.Status.VirtualNodeName = Ref{Name: o.Name}.VirtualNodeName()
		if changed {
			_, err = r.localMC.MulticlusterV1alpha1().ClusterTargets().UpdateStatus(ctx, o, metav1.UpdateOptions{})
			r.event(o, status, reason, message)
		}
	}
	if changed {
		logger.Info("Target status", "target", klog.KObj(obj), "ready", status, "reason", reason, "message", message)
	}
	if err != nil && !apierrors.IsNotFound(err) {
		logger.Error(err, "Cannot update target status", "target", klog.KObj(obj))
	}
}

func (r *Registry) event(obj interface{ GetName() string }, status metav1.ConditionStatus, reason, message string) {
	if r.opts.Recorder == nil {
		return
	}
	o, ok := obj.(runtime.Object)
	if !ok {
		return
	}
	eventType := corev1.EventTypeNormal
	if status != metav1.ConditionTrue {
		eventType = corev1.EventTypeWarning
	}
	r.opts.Recorder.Event(o, eventType, reason, message)
}

// onceWarnings logs each distinct API warning of a target once: a legacy
// service-account token, for one, draws the same warning on every request.
type onceWarnings struct {
	target string
	seen   sync.Map
}

func (w *onceWarnings) HandleWarningHeaderWithContext(ctx context.Context, code int, _ string, text string) {
	if code != 299 || text == "" {
		return
	}
	if _, loaded := w.seen.LoadOrStore(text, struct{}{}); loaded {
		return
	}
	klog.FromContext(ctx).Info("Warning from target API server (logged once)", "target", w.target, "warning", text)
}
