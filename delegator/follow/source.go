package follow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/delegator/controller"
	"admiralty.io/multicluster-scheduler/delegator/service"
	"admiralty.io/multicluster-scheduler/names"
	"admiralty.io/multicluster-scheduler/targets"
)

// Event reasons on source objects.
const (
	// ReasonFollowConflict: an object of that name exists in a target and
	// is not this cluster's copy; it is not overwritten.
	ReasonFollowConflict = "FollowConflict"
	// ReasonFollowFailed: a copy cannot be written, for another reason.
	ReasonFollowFailed = "FollowFailed"
)

const indexRefs = "followRefs"

// Source is the source side: it copies what the pods of this cluster need
// to the targets where their delegates run, keeps the copies in sync and
// deletes those of services and ingresses that are no longer wanted.
type Source struct {
	clusterName string
	recorder    record.EventRecorder
	local       map[*kind]cache.SharedIndexInformer
	controller  *controller.Controller

	mu      sync.Mutex
	targets map[targets.Ref]*targetState
	// written remembers, by target and object, the copy last written, so
	// that an unchanged object is not written again. Config maps and
	// secrets cannot be read in targets: this is all the source knows of
	// them.
	written map[string]writtenCopy
}

type writtenCopy struct {
	hash string
	uid  types.UID
}

// targetState is what the source keeps per connected target.
type targetState struct {
	t         *targets.Target
	dyn       dynamic.Interface
	chaperons cache.SharedIndexInformer
	// copies informs on this source's copies of readable kinds (services
	// and ingresses) in the target.
	copies  map[*kind]cache.SharedIndexInformer
	factory informers.SharedInformerFactory
}

// NewSourceController is the delegator's factory of the source side.
func NewSourceController(_ context.Context, d *app.Delegator) (app.Controller, error) {
	f := d.KubeInformers
	c := &Source{
		clusterName: d.Options.ClusterName,
		recorder:    d.Recorder,
		local: map[*kind]cache.SharedIndexInformer{
			kindConfigMap: f.Core().V1().ConfigMaps().Informer(),
			kindSecret:    f.Core().V1().Secrets().Informer(),
			kindService:   f.Core().V1().Services().Informer(),
			kindIngress:   f.Networking().V1().Ingresses().Informer(),
		},
		targets: map[targets.Ref]*targetState{},
		written: map[string]writtenCopy{},
	}
	c.controller = controller.New("follow", d.Options.Workers, c.reconcile)
	for k, inf := range c.local {
		_, _ = inf.AddEventHandler(c.controller.MappedHandler(func(obj any) []string {
			o, ok := obj.(metav1.Object)
			if !ok {
				return nil
			}
			keys := []string{objectKey(k, o.GetNamespace(), o.GetName())}
			if k == kindService {
				// An ingress follows its rerouted backends.
				keys = append(keys, c.localKeys(kindIngress, o.GetNamespace())...)
			}
			return keys
		}))
		c.controller.WaitFor(inf.HasSynced)
	}
	d.Targets.Subscribe(c)
	d.Targets.OnReadable(c.targetReadable)
	registerMetrics(c)
	return c, nil
}

// Name of the control loop.
func (c *Source) Name() string { return c.controller.Name() }

// Start runs until ctx is done.
func (c *Source) Start(ctx context.Context) error { return c.controller.Start(ctx) }

// Keys: "o|Kind|ns|name" for a source object, "m|target|ns|name" for
// marking a chaperon in a target once its dependencies are copied.
func objectKey(k *kind, ns, name string) string { return "o|" + k.name + "|" + ns + "|" + name }
func markKey(ref targets.Ref, ns, name string) string {
	return "m|" + ref.Namespace + "|" + ref.Name + "|" + ns + "|" + name
}

func (c *Source) localKeys(k *kind, ns string) []string {
	objs, _ := c.local[k].GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	keys := make([]string, 0, len(objs))
	for _, o := range objs {
		if m, ok := o.(metav1.Object); ok {
			keys = append(keys, objectKey(k, m.GetNamespace(), m.GetName()))
		}
	}
	return keys
}

// TargetAdded implements targets.Handler.
func (c *Source) TargetAdded(t *targets.Target) {
	if t.Self {
		// The objects are already there.
		return
	}
	st := &targetState{t: t, copies: map[*kind]cache.SharedIndexInformer{}}
	st.dyn = t.Dynamic
	st.chaperons = t.Chaperons.Multicluster().V1alpha1().PodChaperons().Informer()
	// Fails if the informer already runs; lookups then scan the namespace.
	_ = st.chaperons.AddIndexers(cache.Indexers{indexRefs: chaperonRefKeys})
	_, _ = st.chaperons.AddEventHandler(c.controller.MappedHandler(func(obj any) []string {
		ch, ok := obj.(*v1alpha1.PodChaperon)
		if !ok {
			return nil
		}
		var keys []string
		for _, r := range References(&ch.Spec) {
			keys = append(keys, objectKey(kindNamed(r.Kind), ch.Namespace, r.Name))
		}
		keys = append(keys, c.localKeys(kindIngress, ch.Namespace)...)
		return append(keys, markKey(t.Ref, ch.Namespace, ch.Name))
	}))
	st.factory = informers.NewSharedInformerFactoryWithOptions(t.WatchClient, 0,
		informers.WithNamespace(t.Scope),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = LabelOriginCluster + "=" + names.Fit(c.clusterName, names.MaxLabel)
		}))
	st.copies[kindService] = st.factory.Core().V1().Services().Informer()
	st.copies[kindIngress] = st.factory.Networking().V1().Ingresses().Informer()
	for k, inf := range st.copies {
		// A copy whose source object went while this process was down is
		// found here, and deleted.
		_, _ = inf.AddEventHandler(c.controller.MappedHandler(func(obj any) []string {
			o, ok := obj.(metav1.Object)
			if !ok {
				return nil
			}
			keys := []string{objectKey(k, o.GetLabels()[LabelOriginNamespace], originName(o))}
			if ing, ok := o.(*networkingv1.Ingress); ok {
				// Its TLS secrets follow the copy.
				for _, name := range IngressSecrets(ing) {
					keys = append(keys, objectKey(kindSecret, o.GetLabels()[LabelOriginNamespace], name))
				}
			}
			return keys
		}))
	}
	c.mu.Lock()
	c.targets[t.Ref] = st
	c.mu.Unlock()
	st.factory.Start(t.Context().Done())
	// The copies' caches syncing is the other half of readable (the
	// chaperons' is OnReadable's).
	go func() {
		for _, inf := range st.copies {
			select {
			case <-inf.HasSyncedChecker().Done():
			case <-t.Context().Done():
				return
			}
		}
		c.targetReadable(t)
	}()
}

// readable tells whether what st's caches show may be acted on: the
// target's chaperons (targets.Target.Readable) and this source's copies
// there. Until then, reconcile skips st; targetReadable runs what it
// skipped.
func (st *targetState) readable() bool {
	if !st.t.Readable() {
		return false
	}
	for _, inf := range st.copies {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// targetReadable queues what t needs once it is readable (its caches
// synced, or it answers again): every service and ingress, here or copied
// there (a copy whose source went meanwhile is deleted), and the
// dependencies and mark of every chaperon there.
func (c *Source) targetReadable(t *targets.Target) {
	c.mu.Lock()
	st := c.targets[t.Ref]
	c.mu.Unlock()
	if st == nil || st.t != t || !st.readable() {
		return
	}
	for _, k := range []*kind{kindService, kindIngress} {
		for _, o := range c.local[k].GetStore().List() {
			if m, ok := o.(metav1.Object); ok && (t.Scope == "" || t.Scope == m.GetNamespace()) {
				c.controller.EnqueueKey(objectKey(k, m.GetNamespace(), m.GetName()))
			}
		}
	}
	for k, inf := range st.copies {
		for _, o := range inf.GetStore().List() {
			if m, ok := o.(metav1.Object); ok {
				c.controller.EnqueueKey(objectKey(k, m.GetLabels()[LabelOriginNamespace], originName(m)))
			}
		}
	}
	for _, o := range st.chaperons.GetStore().List() {
		ch, ok := o.(*v1alpha1.PodChaperon)
		if !ok {
			continue
		}
		for _, r := range References(&ch.Spec) {
			c.controller.EnqueueKey(objectKey(kindNamed(r.Kind), ch.Namespace, r.Name))
		}
		c.controller.EnqueueKey(markKey(t.Ref, ch.Namespace, ch.Name))
	}
}

// TargetRemoved implements targets.Handler. Copies stay in a removed
// target (it may be only unreachable); a Target deleted for good has its
// chaperons deleted, and the target's delegator then deletes the config
// maps and secrets no delegate uses.
func (c *Source) TargetRemoved(t *targets.Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.targets[t.Ref]
	if !ok {
		return
	}
	delete(c.targets, t.Ref)
	prefix := t.Ref.String() + "|"
	for key := range c.written {
		if strings.HasPrefix(key, prefix) {
			delete(c.written, key)
		}
	}
	// The target's context is cancelled after this returns.
	go st.factory.Shutdown()
}

// CleanupTarget implements targets.Cleaner: a deleted Target takes this
// source's copies of services and ingresses with it (those of config maps
// and secrets go with the chaperons, deleted by the target's delegator).
func (c *Source) CleanupTarget(ctx context.Context, t *targets.Target) error {
	if t.Self {
		return nil
	}
	dyn := t.Dynamic
	selector := LabelOriginCluster + "=" + names.Fit(c.clusterName, names.MaxLabel)
	for _, k := range []*kind{kindService, kindIngress} {
		res := dyn.Resource(k.gvr).Namespace(t.Scope)
		list, err := res.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return fmt.Errorf("listing copies of %s: %w", k.gvr.Resource, err)
		}
		for _, cp := range list.Items {
			uid := cp.GetUID()
			err := dyn.Resource(k.gvr).Namespace(cp.GetNamespace()).Delete(ctx, cp.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return fmt.Errorf("deleting the copy of %s %s/%s: %w", k.name, cp.GetNamespace(), cp.GetName(), err)
			}
		}
	}
	klog.FromContext(ctx).V(2).Info("Deleted the copies of services and ingresses of a deleted target", "target", t.Ref.String())
	return nil
}

var _ targets.Cleaner = &Source{}

// originName is the source object's name of a copy (the label is fitted).
func originName(o metav1.Object) string {
	a := o.GetAnnotations()[AnnotationOrigin]
	if parts := strings.SplitN(a, "/", 3); len(parts) == 3 {
		return parts[2]
	}
	return o.GetLabels()[LabelOriginName]
}

// chaperonRefKeys indexes chaperons by "namespace/Kind/name" of the
// objects their spec refers to.
func chaperonRefKeys(obj any) ([]string, error) {
	ch, ok := obj.(*v1alpha1.PodChaperon)
	if !ok {
		return nil, nil
	}
	refs := References(&ch.Spec)
	keys := make([]string, len(refs))
	for i, r := range refs {
		keys[i] = ch.Namespace + "/" + r.String()
	}
	return keys, nil
}

// referring lists the chaperons of inf in ns that refer to r.
func referring(inf cache.SharedIndexInformer, ns string, r Ref) []*v1alpha1.PodChaperon {
	var out []*v1alpha1.PodChaperon
	if objs, err := inf.GetIndexer().ByIndex(indexRefs, ns+"/"+r.String()); err == nil {
		for _, o := range objs {
			out = append(out, o.(*v1alpha1.PodChaperon))
		}
		return out
	}
	objs, _ := inf.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	for _, o := range objs {
		ch := o.(*v1alpha1.PodChaperon)
		for _, cr := range References(&ch.Spec) {
			if cr == r {
				out = append(out, ch)
				break
			}
		}
	}
	return out
}

func (c *Source) states() []*targetState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*targetState, 0, len(c.targets))
	for _, st := range c.targets {
		out = append(out, st)
	}
	return out
}

func (c *Source) reconcile(ctx context.Context, key string) (controller.Result, error) {
	parts := strings.Split(key, "|")
	switch {
	case len(parts) == 4 && parts[0] == "o":
		k := kindNamed(parts[1])
		if k == nil {
			return controller.Result{}, nil
		}
		return controller.Result{}, c.reconcileObject(ctx, k, parts[2], parts[3])
	case len(parts) == 5 && parts[0] == "m":
		c.mu.Lock()
		st := c.targets[targets.Ref{Namespace: parts[1], Name: parts[2]}]
		c.mu.Unlock()
		if st == nil {
			return controller.Result{}, nil
		}
		return controller.Result{}, c.mark(ctx, st, parts[3], parts[4])
	}
	return controller.Result{}, nil
}

// source returns the source object, or nil if there is none or it must
// not be followed.
func (c *Source) source(k *kind, ns, name string) metav1.Object {
	obj, exists, err := c.local[k].GetStore().GetByKey(ns + "/" + name)
	if err != nil || !exists {
		return nil
	}
	o, ok := obj.(metav1.Object)
	if !ok || !Followable(o) {
		return nil
	}
	return o
}

// reconcileObject makes the copies of one source object match the targets
// that want it.
func (c *Source) reconcileObject(ctx context.Context, k *kind, ns, name string) error {
	src := c.source(k, ns, name)
	var errs []error
	for _, st := range c.states() {
		if st.t.Scope != "" && st.t.Scope != ns {
			continue
		}
		if !st.readable() {
			// What it wants is not known (targetReadable brings this
			// key back). What it was sent of a deleted object is
			// forgotten all the same: nothing else would.
			if src == nil {
				c.forget(st, k, ns, name)
			}
			continue
		}
		if src != nil && c.wanted(st, k, src) {
			if _, err := c.write(ctx, st, k, src); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		c.forget(st, k, ns, name)
		if k.readable {
			if err := c.deleteCopy(ctx, st, k, ns, name); err != nil {
				errs = append(errs, err)
			}
		}
		// Config maps and secrets that no delegate uses any more are
		// deleted by the target's delegator, which sees its delegates.
	}
	return errors.Join(errs...)
}

// wanted tells whether target st needs a copy of src.
func (c *Source) wanted(st *targetState, k *kind, src metav1.Object) bool {
	switch k {
	case kindConfigMap:
		return len(referring(st.chaperons, src.GetNamespace(), Ref{Kind: k.name, Name: src.GetName()})) > 0
	case kindSecret:
		return len(referring(st.chaperons, src.GetNamespace(), Ref{Kind: k.name, Name: src.GetName()})) > 0 ||
			c.tlsOfIngressCopy(st, src.GetNamespace(), src.GetName())
	case kindService:
		return service.IsGlobal(src.(*corev1.Service))
	case kindIngress:
		return c.ingressWanted(st, src.(*networkingv1.Ingress))
	}
	return false
}

// ingressWanted: one of the ingress's backends is a rerouted service that
// selects delegates in the target.
func (c *Source) ingressWanted(st *targetState, ing *networkingv1.Ingress) bool {
	for _, name := range IngressServices(ing) {
		obj, exists, err := c.local[kindService].GetStore().GetByKey(ing.Namespace + "/" + name)
		if err != nil || !exists {
			continue
		}
		svc := obj.(*corev1.Service)
		if !service.IsRerouted(svc) || len(svc.Spec.Selector) == 0 {
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		objs, _ := st.chaperons.GetIndexer().ByIndex(cache.NamespaceIndex, ing.Namespace)
		for _, o := range objs {
			if sel.Matches(labels.Set(o.(*v1alpha1.PodChaperon).Labels)) {
				return true
			}
		}
	}
	return false
}

// tlsOfIngressCopy tells whether this source's copy of an ingress in st
// names secret ns/name for TLS. Only once the ingress copy is there: the
// target deletes a secret copy that nothing there uses.
func (c *Source) tlsOfIngressCopy(st *targetState, ns, name string) bool {
	objs, _ := st.copies[kindIngress].GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	for _, o := range objs {
		for _, s := range IngressSecrets(o.(*networkingv1.Ingress)) {
			if s == name {
				return true
			}
		}
	}
	return false
}

// IngressSecrets lists the TLS secrets of an ingress.
func IngressSecrets(ing *networkingv1.Ingress) []string {
	var out []string
	for _, t := range ing.Spec.TLS {
		if t.SecretName != "" {
			out = append(out, t.SecretName)
		}
	}
	return out
}

// IngressServices lists the names of the services an ingress routes to.
func IngressServices(ing *networkingv1.Ingress) []string {
	seen := map[string]bool{}
	var out []string
	add := func(b *networkingv1.IngressBackend) {
		if b != nil && b.Service != nil && b.Service.Name != "" && !seen[b.Service.Name] {
			seen[b.Service.Name] = true
			out = append(out, b.Service.Name)
		}
	}
	add(ing.Spec.DefaultBackend)
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for i := range r.HTTP.Paths {
			add(&r.HTTP.Paths[i].Backend)
		}
	}
	return out
}

func (c *Source) writtenKey(st *targetState, k *kind, ns, name string) string {
	return st.t.Ref.String() + "|" + k.name + "|" + ns + "|" + name
}

func (c *Source) forget(st *targetState, k *kind, ns, name string) {
	c.mu.Lock()
	delete(c.written, c.writtenKey(st, k, ns, name))
	c.mu.Unlock()
}

// write creates or updates the copy of src in st, and says whether the
// copy there is now src's. An object of that name that is not this
// cluster's copy is never overwritten: the target refuses it (the
// multicluster-scheduler-followed-copies admission policy, and for
// readable kinds this check first), and the conflict is reported.
func (c *Source) write(ctx context.Context, st *targetState, k *kind, src metav1.Object) (bool, error) {
	logger := klog.FromContext(ctx)
	ns, name := src.GetNamespace(), src.GetName()
	u, hash, err := makeCopy(k, src, c.clusterName)
	if err != nil {
		return false, err
	}
	wkey := c.writtenKey(st, k, ns, name)
	c.mu.Lock()
	w := c.written[wkey]
	c.mu.Unlock()
	if w.hash == hash {
		return true, nil
	}
	res := st.dyn.Resource(k.gvr).Namespace(ns)
	created, err := res.Create(ctx, u, metav1.CreateOptions{FieldManager: "admiralty-delegator"})
	if err == nil {
		c.remember(wkey, hash, created.GetUID())
		logger.V(2).Info("Followed", "kind", k.name, "object", klog.KRef(ns, name), "target", st.t.Ref.String())
		return true, nil
	}
	if apierrors.IsNotFound(err) {
		// The namespace does not exist there (a global service and a
		// ClusterTarget): nothing to follow into.
		logger.V(2).Info("Not following into a missing namespace", "kind", k.name, "object", klog.KRef(ns, name), "target", st.t.Ref.String())
		return false, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return false, c.failed(st, k, src, err)
	}
	if k.readable {
		cur, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err // gone meanwhile: try again
		}
		if !IsCopyOf(cur, c.clusterName, ns, name) {
			c.conflict(ctx, st, k, src, fmt.Errorf("%s %s/%s exists and is not this cluster's copy", k.name, ns, name))
			return false, nil
		}
		u.SetResourceVersion(cur.GetResourceVersion())
		u.SetUID(cur.GetUID())
	} else if w.uid != "" {
		// The UID of the copy this process made: an update of any other
		// object of that name fails (a UID cannot change).
		u.SetUID(w.uid)
	}
	updated, err := res.Update(ctx, u, metav1.UpdateOptions{FieldManager: "admiralty-delegator"})
	switch {
	case err == nil:
		c.remember(wkey, hash, updated.GetUID())
		logger.V(2).Info("Followed (updated)", "kind", k.name, "object", klog.KRef(ns, name), "target", st.t.Ref.String())
		return true, nil
	case apierrors.IsForbidden(err) || apierrors.IsInvalid(err):
		c.conflict(ctx, st, k, src, err)
		return false, nil
	default:
		return false, err
	}
}

func (c *Source) remember(wkey, hash string, uid types.UID) {
	c.mu.Lock()
	c.written[wkey] = writtenCopy{hash: hash, uid: uid}
	c.mu.Unlock()
}

func (c *Source) conflict(ctx context.Context, st *targetState, k *kind, src metav1.Object, err error) {
	c.forget(st, k, src.GetNamespace(), src.GetName())
	klog.FromContext(ctx).Info("Not overwriting an object that is not this cluster's copy", "kind", k.name,
		"object", klog.KRef(src.GetNamespace(), src.GetName()), "target", st.t.Ref.String(), "err", err.Error())
	c.recorder.Eventf(src.(runtime.Object), corev1.EventTypeWarning, ReasonFollowConflict,
		"%s: an object of this name exists there and is not this cluster's copy; it is not overwritten (%v)", st.t.Ref.Name, err)
}

func (c *Source) failed(st *targetState, k *kind, src metav1.Object, err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
		c.recorder.Eventf(src.(runtime.Object), corev1.EventTypeWarning, ReasonFollowFailed, "%s: cannot copy the %s: %v", st.t.Ref.Name, k.name, err)
	}
	return fmt.Errorf("copying %s %s/%s to %s: %w", k.name, src.GetNamespace(), src.GetName(), st.t.Ref.String(), err)
}

// deleteCopy deletes the copy of a readable kind, if st has one.
func (c *Source) deleteCopy(ctx context.Context, st *targetState, k *kind, ns, name string) error {
	obj, exists, err := st.copies[k].GetStore().GetByKey(ns + "/" + name)
	if err != nil || !exists {
		return err
	}
	cp := obj.(metav1.Object)
	if !IsCopyOf(cp, c.clusterName, ns, name) {
		return nil
	}
	uid := cp.GetUID()
	err = st.dyn.Resource(k.gvr).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting the copy of %s %s/%s in %s: %w", k.name, ns, name, st.t.Ref.String(), err)
	}
	klog.FromContext(ctx).V(2).Info("Deleted copy", "kind", k.name, "object", klog.KRef(ns, name), "target", st.t.Ref.String())
	return nil
}

// mark copies the dependencies of a chaperon in st, then says so on the
// chaperon (AnnotationFollowed), which the target waits for before it
// makes the delegate.
func (c *Source) mark(ctx context.Context, st *targetState, ns, name string) error {
	if !st.readable() {
		// targetReadable brings this key back.
		return nil
	}
	obj, exists, err := st.chaperons.GetStore().GetByKey(ns + "/" + name)
	if err != nil || !exists {
		return err
	}
	ch := obj.(*v1alpha1.PodChaperon)
	if ch.DeletionTimestamp != nil {
		return nil
	}
	refs := References(&ch.Spec)
	if len(refs) == 0 {
		return nil
	}
	cur, marked := ch.Annotations[AnnotationFollowed]
	missing := waitingReason(ch.Status.PodStatus) == ReasonDependenciesMissing
	if marked && !missing {
		return nil
	}
	if missing {
		// The target misses a copy this process thinks it wrote (the
		// target deleted it meanwhile): write again.
		for _, r := range refs {
			c.forget(st, kindNamed(r.Kind), ns, r.Name)
		}
	}
	var delivered []Ref
	for _, r := range refs {
		k := kindNamed(r.Kind)
		src := c.source(k, ns, r.Name)
		if src == nil {
			// Missing here too: the delegate sees what a pod of this
			// cluster would see.
			continue
		}
		ok, err := c.write(ctx, st, k, src)
		if err != nil {
			return err
		}
		if ok {
			delivered = append(delivered, r)
		}
	}
	value := JoinRefs(delivered)
	if marked && cur == value {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationFollowed: value}}})
	if err != nil {
		return err
	}
	_, err = st.t.MCClient.MulticlusterV1alpha1().PodChaperons(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("marking chaperon %s/%s in %s: %w", ns, name, st.t.Ref.String(), err)
	}
	klog.FromContext(ctx).V(2).Info("Dependencies followed", "chaperon", klog.KRef(ns, name), "target", st.t.Ref.String(), "followed", value)
	return nil
}
