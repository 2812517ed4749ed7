package source

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	mclisters "admiralty.io/multicluster-scheduler/apis/generated/listers/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/delegator/controller"
)

// The delegates controller (target side) lets sources read their delegates
// and nothing else of the pods of a namespace. The source ClusterRole grants
// no pods at all: RBAC cannot say "the pods made from my chaperons", only
// "these names". So, in every namespace that holds delegates (pods controlled
// by a PodChaperon, which this cluster's delegator makes) and has Source
// subjects (the Sources of the namespace and every ClusterSource), it keeps
// one Role, DelegatesRole, that grants get on those pods and their log, and
// get and create on their exec, attach and portforward subresources, by
// name, and one RoleBinding of it to those subjects. Names come from the
// delegator's watch of delegates (app.Delegator.Delegates); the work-queue
// key is the namespace, added with a delay (DelegatesDelay) so that a burst
// of delegates costs a few writes, and the Role is written only when its
// sorted list of names changes.
//
// A namespace with no delegate or no subject has neither object: an empty
// resourceNames would grant every pod, so the Role is deleted, never left
// empty.
const (
	// DelegatesRole names the Role and the RoleBinding in each namespace.
	DelegatesRole = "multicluster-scheduler-source-delegates"
	// ManagedByDelegates is the LabelManagedBy value of both.
	ManagedByDelegates = "admiralty-source-delegates-controller"
	// DelegatesDelay is how long after a change the namespace's Role is
	// written: the changes of that second are written at once.
	DelegatesDelay = time.Second
	// ReasonRoleConflict (Event on the Role or RoleBinding): an object of
	// that name exists that this controller did not create; it is left
	// alone, and the sources of the namespace cannot read their delegates.
	ReasonRoleConflict = "DelegatesRoleConflict"
)

// delegateVerbs are what a source may do to its delegates: read them and
// their logs (kubectl logs, kubectl admiralty describe), exec, attach and
// port-forward (the subresources take get for WebSocket and create for
// SPDY). Create on pods itself takes no name, so this rule never lets a
// source create a pod.
var (
	delegateResources = []string{"pods", "pods/log", "pods/exec", "pods/attach", "pods/portforward"}
	delegateVerbs     = []string{"get", "create"}
)

// DelegatesController keeps the delegates Role and RoleBinding of each
// namespace.
type DelegatesController struct {
	client   kubernetes.Interface
	recorder record.EventRecorder

	pods           corelisters.PodLister
	podIndexer     cache.Indexer
	chaperons      mclisters.PodChaperonLister
	sources        mclisters.SourceLister
	clusterSources mclisters.ClusterSourceLister
	roles          rbaclisters.RoleLister
	roleBindings   rbaclisters.RoleBindingLister
	roleIndexer    cache.Indexer

	// own informs on the Roles and RoleBindings named DelegatesRole only.
	own        informers.SharedInformerFactory
	controller *controller.Controller
}

var _ app.Controller = &DelegatesController{}

// NewDelegatesController is the delegator's factory of the delegates
// controller.
func NewDelegatesController(_ context.Context, d *app.Delegator) (app.Controller, error) {
	own := informers.NewSharedInformerFactoryWithOptions(d.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", DelegatesRole).String()
		}))
	pods := d.Delegates.Core().V1().Pods().Informer()
	chaperons := d.MCInformers.Multicluster().V1alpha1().PodChaperons()
	sources := d.MCInformers.Multicluster().V1alpha1().Sources()
	clusterSources := d.MCInformers.Multicluster().V1alpha1().ClusterSources()
	roles := own.Rbac().V1().Roles()
	roleBindings := own.Rbac().V1().RoleBindings()

	c := &DelegatesController{
		client:         d.Client,
		recorder:       d.Recorder,
		pods:           corelisters.NewPodLister(pods.GetIndexer()),
		podIndexer:     pods.GetIndexer(),
		chaperons:      chaperons.Lister(),
		sources:        sources.Lister(),
		clusterSources: clusterSources.Lister(),
		roles:          roles.Lister(),
		roleBindings:   roleBindings.Lister(),
		roleIndexer:    roles.Informer().GetIndexer(),
		own:            own,
	}
	c.controller = controller.New("source-delegates", 2, c.reconcile)

	later := func(ns string) { c.controller.EnqueueKeyAfter(ns, DelegatesDelay) }
	// Delegates come and go; an update matters only if it changes the
	// pod's controller (status updates are most of a pod's events).
	_, _ = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { onNamespace(obj, later) },
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*corev1.Pod)
			n, ok2 := obj.(*corev1.Pod)
			if ok1 && ok2 && !apiequality.Semantic.DeepEqual(metav1.GetControllerOf(o), metav1.GetControllerOf(n)) {
				later(n.Namespace)
			}
		},
		DeleteFunc: func(obj any) { onNamespace(obj, later) },
	})
	// A delegate counts only while its chaperon is there.
	_, _ = chaperons.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { onNamespace(obj, later) },
		DeleteFunc: func(obj any) { onNamespace(obj, later) },
	})
	// Subjects: a Source's namespace; a ClusterSource's are every
	// namespace with delegates or a Role. Status updates change nothing.
	specChanged := func(old, obj any) bool {
		o, ok1 := old.(metav1.Object)
		n, ok2 := obj.(metav1.Object)
		return !ok1 || !ok2 || o.GetGeneration() != n.GetGeneration() ||
			(o.GetDeletionTimestamp() == nil) != (n.GetDeletionTimestamp() == nil)
	}
	_, _ = sources.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { onNamespace(obj, later) },
		UpdateFunc: func(old, obj any) {
			if specChanged(old, obj) {
				onNamespace(obj, later)
			}
		},
		DeleteFunc: func(obj any) { onNamespace(obj, later) },
	})
	all := func() {
		for _, ns := range c.namespaces() {
			later(ns)
		}
	}
	_, _ = clusterSources.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { all() },
		UpdateFunc: func(old, obj any) {
			if specChanged(old, obj) {
				all()
			}
		},
		DeleteFunc: func(any) { all() },
	})
	// Its own objects, edited or deleted by someone else, are restored.
	// Delayed too: each of its own writes comes back here, and an immediate
	// pass would write again with the few delegates made meanwhile.
	for _, inf := range []cache.SharedIndexInformer{roles.Informer(), roleBindings.Informer()} {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { onNamespace(obj, later) },
			UpdateFunc: func(_, obj any) { onNamespace(obj, later) },
			DeleteFunc: func(obj any) { onNamespace(obj, later) },
		})
	}
	c.controller.WaitFor(pods.HasSynced, chaperons.Informer().HasSynced, sources.Informer().HasSynced,
		clusterSources.Informer().HasSynced, roles.Informer().HasSynced, roleBindings.Informer().HasSynced)
	return c, nil
}

func onNamespace(obj any, enqueue func(string)) {
	if m, ok := controller.Object(obj).(metav1.Object); ok {
		enqueue(m.GetNamespace())
	}
}

// namespaces are those with delegates or with a Role of this controller.
func (c *DelegatesController) namespaces() []string {
	seen := map[string]bool{}
	for _, idx := range []cache.Indexer{c.podIndexer, c.roleIndexer} {
		for _, ns := range idx.ListIndexFuncValues(cache.NamespaceIndex) {
			seen[ns] = true
		}
	}
	out := make([]string, 0, len(seen))
	for ns := range seen {
		out = append(out, ns)
	}
	return out
}

// Name of the control loop.
func (c *DelegatesController) Name() string { return c.controller.Name() }

// Start runs until ctx is done.
func (c *DelegatesController) Start(ctx context.Context) error {
	c.own.Start(ctx.Done())
	defer c.own.Shutdown()
	return c.controller.Start(ctx)
}

func (c *DelegatesController) reconcile(ctx context.Context, ns string) (controller.Result, error) {
	pods, err := c.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return controller.Result{}, err
	}
	chaperonUID := func(name string) (types.UID, bool) {
		ch, err := c.chaperons.PodChaperons(ns).Get(name)
		if err != nil {
			return "", false
		}
		return ch.UID, true
	}
	srcs, err := c.sources.Sources(ns).List(labels.Everything())
	if err != nil {
		return controller.Result{}, err
	}
	csrcs, err := c.clusterSources.List(labels.Everything())
	if err != nil {
		return controller.Result{}, err
	}
	role, binding := DesiredDelegatesRole(ns, pods, chaperonUID, srcs, csrcs)
	logger := klog.FromContext(ctx).WithValues("namespace", ns)
	ctx = klog.NewContext(ctx, logger)
	if role == nil {
		// Revoke: the binding first, so that no one holds a dangling grant.
		return controller.Result{}, c.revokeDelegates(ctx, ns)
	}
	// Grant: the Role first, so that the binding never names a missing one.
	err = c.ensureRole(ctx, role)
	if err == nil {
		err = c.ensureRoleBinding(ctx, binding)
	}
	switch {
	case apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err):
		// The cache is behind this controller's own last write: look again
		// once it caught up.
		logger.V(4).Info("Cache behind the API server, looking again", "err", err)
		return controller.Result{RequeueAfter: DelegatesDelay}, nil
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) || apierrors.IsNotFound(err):
		// The namespace goes, with its delegates: their deletions bring
		// the key back, and nothing is left to grant.
		logger.V(4).Info("Namespace terminating or gone", "err", err)
		return controller.Result{}, nil
	}
	return controller.Result{}, err
}

func (c *DelegatesController) revokeDelegates(ctx context.Context, ns string) error {
	logger := klog.FromContext(ctx)
	if rb, err := c.roleBindings.RoleBindings(ns).Get(DelegatesRole); err == nil && ownDelegates(rb) {
		if err := c.client.RbacV1().RoleBindings(ns).Delete(ctx, rb.Name, uidPrecondition(rb.UID)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting RoleBinding %s/%s: %w", ns, rb.Name, err)
		}
		logger.V(2).Info("Deleted the delegates RoleBinding: no delegate or no source here")
	}
	if r, err := c.roles.Roles(ns).Get(DelegatesRole); err == nil && ownDelegates(r) {
		if err := c.client.RbacV1().Roles(ns).Delete(ctx, r.Name, uidPrecondition(r.UID)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Role %s/%s: %w", ns, r.Name, err)
		}
		logger.V(2).Info("Deleted the delegates Role: no delegate or no source here")
	}
	return nil
}

func (c *DelegatesController) ensureRole(ctx context.Context, want *rbacv1.Role) error {
	have, err := c.roles.Roles(want.Namespace).Get(want.Name)
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.client.RbacV1().Roles(want.Namespace).Create(ctx, want, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating Role %s/%s: %w", want.Namespace, want.Name, err)
		}
		klog.FromContext(ctx).V(2).Info("Created the delegates Role", "delegates", len(want.Rules[0].ResourceNames))
		return nil
	case err != nil:
		return err
	case !ownDelegates(have):
		c.conflict(ctx, have, "Role", have.Namespace)
		return nil
	case apiequality.Semantic.DeepEqual(have.Rules, want.Rules):
		return nil
	}
	have = have.DeepCopy()
	have.Rules = want.Rules
	if _, err := c.client.RbacV1().Roles(want.Namespace).Update(ctx, have, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating Role %s/%s: %w", want.Namespace, want.Name, err)
	}
	klog.FromContext(ctx).V(2).Info("Updated the delegates Role", "delegates", len(want.Rules[0].ResourceNames))
	return nil
}

func (c *DelegatesController) ensureRoleBinding(ctx context.Context, want *rbacv1.RoleBinding) error {
	have, err := c.roleBindings.RoleBindings(want.Namespace).Get(want.Name)
	switch {
	case apierrors.IsNotFound(err):
		if _, err := c.client.RbacV1().RoleBindings(want.Namespace).Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating RoleBinding %s/%s: %w", want.Namespace, want.Name, err)
		}
		klog.FromContext(ctx).V(2).Info("Created the delegates RoleBinding", "subjects", describeSubjects(want.Subjects))
		return nil
	case err != nil:
		return err
	case !ownDelegates(have):
		c.conflict(ctx, have, "RoleBinding", have.Namespace)
		return nil
	case have.RoleRef == want.RoleRef && apiequality.Semantic.DeepEqual(have.Subjects, want.Subjects):
		return nil
	case have.RoleRef != want.RoleRef:
		// The role reference cannot change: delete, and the deletion's event
		// makes it again.
		if err := c.client.RbacV1().RoleBindings(have.Namespace).Delete(ctx, have.Name, uidPrecondition(have.UID)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting RoleBinding %s/%s to remake it: %w", have.Namespace, have.Name, err)
		}
		return nil
	}
	have = have.DeepCopy()
	have.Subjects = want.Subjects
	if _, err := c.client.RbacV1().RoleBindings(want.Namespace).Update(ctx, have, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating RoleBinding %s/%s: %w", want.Namespace, want.Name, err)
	}
	klog.FromContext(ctx).V(2).Info("Updated the delegates RoleBinding", "subjects", describeSubjects(want.Subjects))
	return nil
}

// conflict reports an object of the controller's name that it did not
// create. It is left alone; its change or deletion requeues the namespace.
func (c *DelegatesController) conflict(ctx context.Context, obj runtime.Object, kind, ns string) {
	msg := fmt.Sprintf("%s %s/%s exists and was not made by the delegator (no label %s=%s): it is left alone, and the sources of namespace %s cannot read their delegates (kubectl logs, exec, attach, port-forward) until it is deleted",
		kind, ns, DelegatesRole, LabelManagedBy, ManagedByDelegates, ns)
	klog.FromContext(ctx).Error(nil, msg)
	c.recorder.Event(obj, corev1.EventTypeWarning, ReasonRoleConflict, msg)
}

// ownDelegates tells whether the delegates controller made obj.
func ownDelegates(obj metav1.Object) bool {
	return obj.GetLabels()[LabelManagedBy] == ManagedByDelegates
}

// DesiredDelegatesRole computes the Role and RoleBinding of namespace ns,
// or nil for both when there must be none. Delegates are the pods
// controlled by a PodChaperon that is there (chaperonUID gives the UID of
// the chaperon of a name, if any) with that UID: a pod that only claims a
// chaperon, or a chaperon named after someone else's pod, grants nothing.
// Subjects are those of the valid Sources of ns and of every valid
// ClusterSource, none being deleted, as the source controller binds them.
func DesiredDelegatesRole(ns string, pods []*corev1.Pod, chaperonUID func(name string) (types.UID, bool),
	sources []*v1alpha1.Source, clusterSources []*v1alpha1.ClusterSource) (*rbacv1.Role, *rbacv1.RoleBinding) {
	var names []string
	for _, p := range pods {
		if p.Namespace != ns || !isDelegate(p, chaperonUID) {
			continue
		}
		names = append(names, p.Name)
	}
	sort.Strings(names)
	names = slices.Compact(names)

	var owners []owner
	for _, s := range sources {
		if s.Namespace == ns && s.DeletionTimestamp == nil {
			owners = append(owners, fromSource(s))
		}
	}
	for _, s := range clusterSources {
		if s.DeletionTimestamp == nil {
			owners = append(owners, fromClusterSource(s))
		}
	}
	var subjects []rbacv1.Subject
	for _, o := range owners {
		if o.validate() != nil {
			continue
		}
		for _, s := range o.subjects() {
			if !slices.ContainsFunc(subjects, func(h rbacv1.Subject) bool { return sameSubject(h, s) }) {
				subjects = append(subjects, s)
			}
		}
	}
	sort.Slice(subjects, func(i, j int) bool {
		a, b := subjects[i], subjects[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	// Never a Role with no names: an empty resourceNames grants every pod.
	if len(names) == 0 || len(subjects) == 0 {
		return nil, nil
	}
	meta := metav1.ObjectMeta{
		Name:      DelegatesRole,
		Namespace: ns,
		Labels:    map[string]string{LabelManagedBy: ManagedByDelegates},
	}
	role := &rbacv1.Role{
		ObjectMeta: meta,
		Rules: []rbacv1.PolicyRule{{
			APIGroups:     []string{""},
			Resources:     slices.Clone(delegateResources),
			Verbs:         slices.Clone(delegateVerbs),
			ResourceNames: names,
		}},
	}
	meta.Labels = map[string]string{LabelManagedBy: ManagedByDelegates}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: meta,
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: DelegatesRole},
		Subjects:   subjects,
	}
	return role, binding
}

// isDelegate: pod is controlled by the PodChaperon of its name (a delegate
// is named like its chaperon), which exists with that UID.
func isDelegate(p *corev1.Pod, chaperonUID func(name string) (types.UID, bool)) bool {
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != "PodChaperon" || ref.Name != p.Name {
		return false
	}
	if gv, err := schema.ParseGroupVersion(ref.APIVersion); err != nil || gv.Group != v1alpha1.GroupName {
		return false
	}
	uid, ok := chaperonUID(ref.Name)
	return ok && uid == ref.UID
}
