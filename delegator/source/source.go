// Package source is the target side of connecting clusters: for each Source
// (namespaced) and ClusterSource it makes the source cluster's identity in
// this cluster and authorizes it. It creates the ServiceAccount if missing,
// a long-lived token Secret listed in the ServiceAccount's .secrets (so
// that the seed's kubectl+jq exchange and `kubectl admiralty export` find
// it), and binds the multicluster-scheduler-source ClusterRole (in the
// Source's namespace, or cluster-wide for a ClusterSource) and the
// multicluster-scheduler-cluster-summary-viewer ClusterRole (cluster-wide:
// ClusterSummaries are cluster-scoped). Its verdict is the Ready condition,
// with an Event when it changes.
//
// What it creates goes with its owner: owner references let the garbage
// collector delete it, except the cluster-scoped binding of a namespaced
// Source, which a finalizer on the Source deletes. Objects it did not create
// (a ServiceAccount or a binding that existed before) are never changed
// beyond listing the token Secret, and never deleted.
package source

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	mclisters "admiralty.io/multicluster-scheduler/apis/generated/listers/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/delegator/controller"
)

// Reasons of the Ready condition, also the reasons of the Events.
const (
	// ReasonAuthorized: the identity exists, its token is filled in, and it
	// is bound to both ClusterRoles.
	ReasonAuthorized = "Authorized"
	// ReasonInvalidSpec: the spec names no identity, or an invalid one.
	// Nothing is granted until it is fixed.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonNamespaceNotFound: a ClusterSource's service account is in a
	// namespace that does not exist.
	ReasonNamespaceNotFound    = "NamespaceNotFound"
	ReasonServiceAccountFailed = "ServiceAccountFailed"
	ReasonTokenSecretFailed    = "TokenSecretFailed"
	// ReasonTokenPending: the token Secret exists and kube-controller-manager
	// has not filled in its token yet.
	ReasonTokenPending = "TokenPending"
	// ReasonTokenInvalidated: kube-controller-manager's legacy token cleaner
	// marked the token invalid (unused for a long time).
	ReasonTokenInvalidated = "TokenInvalidated"
	ReasonBindingFailed    = "BindingFailed"
	// ReasonBindingConflict: a binding of the expected name exists that
	// this controller did not create and that does not grant what the
	// Source asks for.
	ReasonBindingConflict = "BindingConflict"
)

// labelTokenInvalidSince is set by kube-controller-manager's legacy
// service account token cleaner on a token it no longer accepts.
const labelTokenInvalidSince = "kubernetes.io/legacy-token-invalid-since"

// retryLater is how soon a Source is looked at again when it waits for
// something this controller does not watch (a namespace, someone else's
// binding).
const retryLater = 15 * time.Second

const (
	indexByServiceAccount = "serviceAccount"
	indexByOwner          = "owner"
)

// Controller reconciles Sources and ClusterSources, each with its own work
// queue (keys namespace/name and name).
type Controller struct {
	client   kubernetes.Interface
	mc       versioned.Interface
	recorder record.EventRecorder

	sourceLister        mclisters.SourceLister
	clusterSourceLister mclisters.ClusterSourceLister
	serviceAccounts     corelisters.ServiceAccountLister
	secrets             cache.Indexer
	roleBindings        cache.Indexer
	clusterRoleBindings cache.Indexer

	// managed informs only on what this controller created.
	managed        informers.SharedInformerFactory
	sources        *controller.Controller
	clusterSources *controller.Controller
}

var _ app.Controller = &Controller{}

// NewController is the delegator's factory of the source controller.
func NewController(_ context.Context, d *app.Delegator) (app.Controller, error) {
	managed := informers.NewSharedInformerFactoryWithOptions(d.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = LabelManagedBy + "=" + ManagedBy
		}))
	si := d.MCInformers.Multicluster().V1alpha1().Sources()
	csi := d.MCInformers.Multicluster().V1alpha1().ClusterSources()
	sai := d.KubeInformers.Core().V1().ServiceAccounts()
	secrets := managed.Core().V1().Secrets().Informer()
	rbs := managed.Rbac().V1().RoleBindings().Informer()
	crbs := managed.Rbac().V1().ClusterRoleBindings().Informer()

	if err := si.Informer().AddIndexers(cache.Indexers{indexByServiceAccount: func(obj any) ([]string, error) {
		if s, ok := obj.(*v1alpha1.Source); ok && s.Spec.ServiceAccountName != "" {
			return []string{s.Namespace + "/" + s.Spec.ServiceAccountName}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, err
	}
	if err := csi.Informer().AddIndexers(cache.Indexers{indexByServiceAccount: func(obj any) ([]string, error) {
		if s, ok := obj.(*v1alpha1.ClusterSource); ok && s.Spec.ServiceAccount != nil {
			return []string{s.Spec.ServiceAccount.Namespace + "/" + s.Spec.ServiceAccount.Name}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, err
	}
	byOwner := cache.Indexers{indexByOwner: func(obj any) ([]string, error) {
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, nil
		}
		if k, ok := markedBy(m); ok {
			return []string{k}, nil
		}
		return nil, nil
	}}
	for _, inf := range []cache.SharedIndexInformer{secrets, rbs, crbs} {
		if err := inf.AddIndexers(byOwner); err != nil {
			return nil, err
		}
	}

	c := &Controller{
		client:              d.Client,
		mc:                  d.MCClient,
		recorder:            d.Recorder,
		sourceLister:        si.Lister(),
		clusterSourceLister: csi.Lister(),
		serviceAccounts:     sai.Lister(),
		secrets:             secrets.GetIndexer(),
		roleBindings:        rbs.GetIndexer(),
		clusterRoleBindings: crbs.GetIndexer(),
		managed:             managed,
	}
	c.sources = controller.New("source", 2, c.reconcileSource)
	c.clusterSources = controller.New("clustersource", 2, c.reconcileClusterSource)

	_, _ = si.Informer().AddEventHandler(c.sources.Handler())
	_, _ = csi.Informer().AddEventHandler(c.clusterSources.Handler())
	for _, q := range []struct {
		ctl      *controller.Controller
		kind     string
		informer cache.SharedIndexInformer
	}{{c.sources, KindSource, si.Informer()}, {c.clusterSources, KindClusterSource, csi.Informer()}} {
		// What this controller created maps back to its owner, so that a
		// deleted or edited binding or token Secret is restored, and a
		// token filled in makes the owner Ready.
		prefix := q.kind + "/"
		toOwner := q.ctl.MappedHandler(func(obj any) []string {
			m, err := meta.Accessor(obj)
			if err != nil {
				return nil
			}
			if k, ok := markedBy(m); ok && strings.HasPrefix(k, prefix) {
				return []string{strings.TrimPrefix(k, prefix)}
			}
			return nil
		})
		for _, inf := range []cache.SharedIndexInformer{secrets, rbs, crbs} {
			_, _ = inf.AddEventHandler(toOwner)
		}
		// A ServiceAccount maps to every owner that names it, whoever
		// created it: one deleted is made again.
		indexer := q.informer.GetIndexer()
		_, _ = sai.Informer().AddEventHandler(q.ctl.MappedHandler(func(obj any) []string {
			sa, ok := obj.(*corev1.ServiceAccount)
			if !ok {
				return nil
			}
			objs, err := indexer.ByIndex(indexByServiceAccount, sa.Namespace+"/"+sa.Name)
			if err != nil {
				return nil
			}
			var keys []string
			for _, o := range objs {
				if k, err := cache.MetaNamespaceKeyFunc(o); err == nil {
					keys = append(keys, k)
				}
			}
			return keys
		}))
	}
	synced := []cache.InformerSynced{si.Informer().HasSynced, csi.Informer().HasSynced, sai.Informer().HasSynced,
		secrets.HasSynced, rbs.HasSynced, crbs.HasSynced}
	c.sources.WaitFor(synced...)
	c.clusterSources.WaitFor(synced...)
	return c, nil
}

// Name of the control loop.
func (c *Controller) Name() string { return "source" }

// Start runs both queues until ctx is done.
func (c *Controller) Start(ctx context.Context) error {
	c.managed.Start(ctx.Done())
	defer c.managed.Shutdown()
	errs := make(chan error, 2)
	go func() { errs <- c.sources.Start(ctx) }()
	go func() { errs <- c.clusterSources.Start(ctx) }()
	return errors.Join(<-errs, <-errs)
}

func (c *Controller) reconcileSource(ctx context.Context, key string) (controller.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controller.Result{}, nil
	}
	s, err := c.sourceLister.Sources(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// Owner references and the finalizer did the cleanup.
		return controller.Result{}, nil
	} else if err != nil {
		return controller.Result{}, err
	}
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithValues("source", klog.KObj(s)))
	if s.DeletionTimestamp != nil {
		return controller.Result{}, c.finalize(ctx, s)
	}
	if !slices.Contains(s.Finalizers, Finalizer) {
		// Before any binding exists, so that none is left behind.
		s = s.DeepCopy()
		s.Finalizers = append(s.Finalizers, Finalizer)
		if s, err = c.mc.MulticlusterV1alpha1().Sources(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			return controller.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}
	return c.sync(ctx, fromSource(s))
}

func (c *Controller) reconcileClusterSource(ctx context.Context, key string) (controller.Result, error) {
	s, err := c.clusterSourceLister.Get(key)
	if apierrors.IsNotFound(err) {
		return controller.Result{}, nil
	} else if err != nil {
		return controller.Result{}, err
	}
	if s.DeletionTimestamp != nil {
		// Everything it created has an owner reference to it.
		return controller.Result{}, nil
	}
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithValues("clusterSource", klog.KObj(s)))
	return c.sync(ctx, fromClusterSource(s))
}

// finalize deletes what the garbage collector cannot (the cluster-scoped
// binding), and what it would delete anyway, so that a deleted Source's
// grants end now rather than when the garbage collector gets to them; then
// lets the Source go.
func (c *Controller) finalize(ctx context.Context, s *v1alpha1.Source) error {
	if !slices.Contains(s.Finalizers, Finalizer) {
		return nil
	}
	if err := c.revoke(ctx, fromSource(s)); err != nil {
		return err
	}
	s = s.DeepCopy()
	s.Finalizers = slices.DeleteFunc(s.Finalizers, func(f string) bool { return f == Finalizer })
	_, err := c.mc.MulticlusterV1alpha1().Sources(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		klog.FromContext(ctx).Info("Source deleted, its bindings and token Secrets with it")
	}
	return err
}

// failure is a reconcile that could not make the owner Ready.
type failure struct {
	reason string
	err    error
	// wait, if positive, looks again after that delay rather than with
	// backoff: for what no informer here reports.
	wait time.Duration
	// final: nothing to retry until the owner changes.
	final bool
}

func (c *Controller) sync(ctx context.Context, o owner) (controller.Result, error) {
	if err := o.validate(); err != nil {
		// An invalid spec grants nothing: what an earlier valid spec
		// granted goes.
		f := &failure{reason: ReasonInvalidSpec, err: err, final: true}
		if rerr := c.revoke(ctx, o); rerr != nil {
			f.final = false
			f.err = fmt.Errorf("%w; revoking what it granted: %w", err, rerr)
		}
		return c.fail(ctx, o, f)
	}
	var sa *corev1.ServiceAccount
	if o.ServiceAccount != nil {
		var f *failure
		if sa, f = c.ensureServiceAccount(ctx, o); f != nil {
			return c.fail(ctx, o, f)
		}
	}
	token, f := c.ensureToken(ctx, o, sa)
	if f != nil {
		return c.fail(ctx, o, f)
	}
	bindings := o.bindings()
	for _, b := range bindings {
		if f := c.ensureBinding(ctx, o, b); f != nil {
			return c.fail(ctx, o, f)
		}
	}

	var granted []string
	for _, b := range bindings {
		granted = append(granted, fmt.Sprintf("%s by %s", b.RoleRef.Name, b))
	}
	msg := fmt.Sprintf("%s bound to %s", describeSubjects(o.subjects()), strings.Join(granted, " and "))
	if token != nil {
		if since, ok := token.Labels[labelTokenInvalidSince]; ok {
			return c.fail(ctx, o, &failure{reason: ReasonTokenInvalidated, final: true, err: fmt.Errorf(
				"kube-controller-manager marked the token of Secret %s/%s invalid since %s (unused for too long): delete the Secret for a new token, then export the credentials again",
				token.Namespace, token.Name, since)})
		}
		if len(token.Data[corev1.ServiceAccountTokenKey]) == 0 {
			// The token controller's update of the Secret requeues.
			return c.fail(ctx, o, &failure{reason: ReasonTokenPending, final: true, err: fmt.Errorf(
				"waiting for kube-controller-manager to fill in the token of Secret %s/%s; %s", token.Namespace, token.Name, msg)})
		}
		msg += fmt.Sprintf("; token in Secret %s/%s", token.Namespace, token.Name)
	}
	return controller.Result{}, c.report(ctx, o, metav1.ConditionTrue, ReasonAuthorized, msg)
}

// fail reports f on the owner's Ready condition and says when to retry.
func (c *Controller) fail(ctx context.Context, o owner, f *failure) (controller.Result, error) {
	if err := c.report(ctx, o, metav1.ConditionFalse, f.reason, f.err.Error()); err != nil {
		klog.FromContext(ctx).Error(err, "Cannot report status", "reason", f.reason)
	}
	switch {
	case f.wait > 0:
		return controller.Result{RequeueAfter: f.wait}, nil
	case f.final:
		return controller.Result{}, nil
	}
	return controller.Result{}, f.err
}

func describeSubjects(subjects []rbacv1.Subject) string {
	var s []string
	for _, sub := range subjects {
		if sub.Kind == rbacv1.ServiceAccountKind {
			s = append(s, fmt.Sprintf("ServiceAccount %s/%s", sub.Namespace, sub.Name))
		} else {
			s = append(s, fmt.Sprintf("%s %s", sub.Kind, sub.Name))
		}
	}
	return strings.Join(s, " and ")
}

// report sets the owner's Ready condition and, when it changes, emits an
// Event with the same reason and message.
func (c *Controller) report(ctx context.Context, o owner, status metav1.ConditionStatus, reason, message string) error {
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, Status: status, Reason: reason, Message: message, ObservedGeneration: o.Generation}
	var err error
	changed := false
	switch obj := o.Object.(type) {
	case *v1alpha1.Source:
		obj = obj.DeepCopy()
		if changed = meta.SetStatusCondition(&obj.Status.Conditions, cond); changed {
			_, err = c.mc.MulticlusterV1alpha1().Sources(obj.Namespace).UpdateStatus(ctx, obj, metav1.UpdateOptions{})
		}
	case *v1alpha1.ClusterSource:
		obj = obj.DeepCopy()
		if changed = meta.SetStatusCondition(&obj.Status.Conditions, cond); changed {
			_, err = c.mc.MulticlusterV1alpha1().ClusterSources().UpdateStatus(ctx, obj, metav1.UpdateOptions{})
		}
	}
	if !changed || apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("updating the status of %s: %w", o, err)
	}
	klog.FromContext(ctx).Info("Source status", "ready", status, "reason", reason, "message", message)
	// A token not filled in yet is the normal first step, not a warning.
	eventType := corev1.EventTypeNormal
	if status != metav1.ConditionTrue && reason != ReasonTokenPending {
		eventType = corev1.EventTypeWarning
	}
	c.recorder.Event(o.Object, eventType, reason, message)
	return nil
}

// ensureServiceAccount returns the owner's ServiceAccount, created if
// missing.
func (c *Controller) ensureServiceAccount(ctx context.Context, o owner) (*corev1.ServiceAccount, *failure) {
	ref := *o.ServiceAccount
	logger := klog.FromContext(ctx).WithValues("serviceAccount", klog.KRef(ref.Namespace, ref.Name))
	sa, err := c.serviceAccounts.ServiceAccounts(ref.Namespace).Get(ref.Name)
	if apierrors.IsNotFound(err) {
		want := &corev1.ServiceAccount{ObjectMeta: o.meta(ref.Namespace, ref.Name)}
		want.OwnerReferences = []metav1.OwnerReference{o.sharedRef()}
		sa, err = c.client.CoreV1().ServiceAccounts(ref.Namespace).Create(ctx, want, metav1.CreateOptions{})
		switch {
		case err == nil:
			logger.Info("Created ServiceAccount")
		case apierrors.IsAlreadyExists(err):
			sa, err = c.client.CoreV1().ServiceAccounts(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		case apierrors.IsNotFound(err):
			return nil, &failure{reason: ReasonNamespaceNotFound, wait: retryLater,
				err: fmt.Errorf("cannot create ServiceAccount %s: namespace %s does not exist", ref, ref.Namespace)}
		}
	}
	if err != nil {
		return nil, &failure{reason: ReasonServiceAccountFailed, err: fmt.Errorf("ServiceAccount %s: %w", ref, err)}
	}
	// A ServiceAccount this controller created is shared by every owner that
	// names it, so that the garbage collector deletes it with the last one
	// rather than from under the others.
	if sa.Labels[LabelManagedBy] == ManagedBy && !hasOwnerRef(sa, o.UID) {
		sa = sa.DeepCopy()
		sa.OwnerReferences = append(sa.OwnerReferences, o.sharedRef())
		if sa, err = c.client.CoreV1().ServiceAccounts(ref.Namespace).Update(ctx, sa, metav1.UpdateOptions{}); err != nil {
			return nil, &failure{reason: ReasonServiceAccountFailed, err: fmt.Errorf("ServiceAccount %s: adding an owner reference: %w", ref, err)}
		}
	}
	return sa, nil
}

// ensureToken keeps one token Secret of sa for the owner, listed in sa's
// .secrets, and deletes the owner's other token Secrets (of a service
// account it no longer names). With sa nil it only deletes.
func (c *Controller) ensureToken(ctx context.Context, o owner, sa *corev1.ServiceAccount) (*corev1.Secret, *failure) {
	logger := klog.FromContext(ctx)
	var keep *corev1.Secret
	for _, s := range c.ownedSecrets(o) {
		if keep == nil && sa != nil && s.DeletionTimestamp == nil && isTokenOf(s, sa) {
			keep = s
			continue
		}
		if err := c.client.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, uidPrecondition(s.UID)); err != nil && !apierrors.IsNotFound(err) {
			return nil, &failure{reason: ReasonTokenSecretFailed, err: fmt.Errorf("deleting stale token Secret %s/%s: %w", s.Namespace, s.Name, err)}
		}
		logger.Info("Deleted stale token Secret", "secret", klog.KObj(s))
	}
	if sa == nil {
		return nil, nil
	}
	if keep == nil {
		want := o.tokenSecret(sa)
		created, err := c.client.CoreV1().Secrets(sa.Namespace).Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Created by an earlier pass that the cache has not seen yet.
			created, err = c.client.CoreV1().Secrets(sa.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
			if err == nil && !o.createdBy(created) {
				err = fmt.Errorf("a Secret of that name exists that %s did not create", o)
			}
		} else if err == nil {
			logger.Info("Created token Secret", "secret", klog.KObj(created))
		}
		if err != nil {
			return nil, &failure{reason: ReasonTokenSecretFailed, err: fmt.Errorf("token Secret %s/%s: %w", want.Namespace, want.Name, err)}
		}
		keep = created
	}
	if !listsSecret(sa, keep.Name) {
		sa = sa.DeepCopy()
		sa.Secrets = append(sa.Secrets, corev1.ObjectReference{Name: keep.Name})
		if _, err := c.client.CoreV1().ServiceAccounts(sa.Namespace).Update(ctx, sa, metav1.UpdateOptions{}); err != nil {
			return nil, &failure{reason: ReasonServiceAccountFailed, err: fmt.Errorf("listing token Secret %s in ServiceAccount %s/%s: %w", keep.Name, sa.Namespace, sa.Name, err)}
		}
	}
	return keep, nil
}

func (c *Controller) ownedSecrets(o owner) []*corev1.Secret {
	objs, _ := c.secrets.ByIndex(indexByOwner, o.indexKey())
	var out []*corev1.Secret
	for _, obj := range objs {
		if s, ok := obj.(*corev1.Secret); ok {
			out = append(out, s)
		}
	}
	// Newest first: of two tokens, the one kept is the one most recently
	// exported, if any.
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreationTimestamp.Equal(&out[j].CreationTimestamp) {
			return out[j].CreationTimestamp.Before(&out[i].CreationTimestamp)
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// ensureBinding makes want exist. A binding of that name that this owner
// did not create is left alone: accepted if it already grants what want
// grants (e.g. made by hand from the seed's example), a conflict otherwise.
func (c *Controller) ensureBinding(ctx context.Context, o owner, want binding) *failure {
	logger := klog.FromContext(ctx).WithValues("binding", klog.KRef(want.Namespace, want.Name), "kind", want.Kind())
	have, err := c.cachedBinding(want.Namespace, want.Name)
	if apierrors.IsNotFound(err) {
		err = c.createBinding(ctx, want)
		if err == nil {
			logger.Info("Created binding", "role", want.RoleRef.Name)
			return nil
		}
		if apierrors.IsAlreadyExists(err) {
			have, err = c.liveBinding(ctx, want.Namespace, want.Name)
		}
	}
	if err != nil {
		return &failure{reason: ReasonBindingFailed, err: fmt.Errorf("%s: %w", want, err)}
	}
	if !o.createdBy(have) {
		if k, ok := markedBy(have); ok {
			return &failure{reason: ReasonBindingConflict, wait: retryLater, err: fmt.Errorf(
				"%s belongs to %s, whose binding names collide with this one's: rename one of them", want, strings.Replace(k, "/", " ", 1))}
		}
		if grants(*have, want) {
			return nil
		}
		return &failure{reason: ReasonBindingConflict, wait: retryLater, err: fmt.Errorf(
			"%s exists, was not created by the source controller, and does not bind %s to ClusterRole %s: delete it, or make it bind them",
			want, describeSubjects(want.Subjects), want.RoleRef.Name)}
	}
	if have.RoleRef != want.RoleRef {
		// A binding's role cannot change: make it again.
		if err := c.deleteBinding(ctx, *have); err != nil && !apierrors.IsNotFound(err) {
			return &failure{reason: ReasonBindingFailed, err: fmt.Errorf("%s: %w", want, err)}
		}
		if err := c.createBinding(ctx, want); err != nil {
			return &failure{reason: ReasonBindingFailed, err: fmt.Errorf("%s: %w", want, err)}
		}
		logger.Info("Recreated binding with another role", "role", want.RoleRef.Name)
		return nil
	}
	if !subjectsEqual(have.Subjects, want.Subjects) {
		updated := *have
		updated.Subjects = want.Subjects
		if err := c.updateBinding(ctx, updated); err != nil {
			return &failure{reason: ReasonBindingFailed, err: fmt.Errorf("%s: %w", want, err)}
		}
		logger.Info("Updated binding subjects", "subjects", describeSubjects(want.Subjects))
	}
	return nil
}

func subjectsEqual(a, b []rbacv1.Subject) bool {
	return slices.EqualFunc(a, b, sameSubject)
}

// revoke deletes the bindings and token Secrets that o created. The
// ServiceAccount stays: other owners may share it, and the garbage
// collector deletes it with the last of them.
func (c *Controller) revoke(ctx context.Context, o owner) error {
	logger := klog.FromContext(ctx)
	// By name from the API as well as from the cache: a binding created a
	// moment ago may not be cached yet.
	seen := map[string]bool{}
	var found []binding
	for _, want := range o.bindings() {
		have, err := c.liveBinding(ctx, want.Namespace, want.Name)
		if apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return err
		}
		if o.createdBy(have) {
			seen[have.String()] = true
			found = append(found, *have)
		}
	}
	for _, b := range c.ownedBindings(o) {
		if !seen[b.String()] {
			found = append(found, b)
		}
	}
	for _, b := range found {
		if err := c.deleteBinding(ctx, b); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting %s: %w", b, err)
		}
		logger.Info("Deleted binding", "binding", klog.KRef(b.Namespace, b.Name), "kind", b.Kind())
	}
	for _, s := range c.ownedSecrets(o) {
		if err := c.client.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, uidPrecondition(s.UID)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting token Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
		logger.Info("Deleted token Secret", "secret", klog.KObj(s))
	}
	return nil
}

func uidPrecondition(uid types.UID) metav1.DeleteOptions {
	return metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
}

// Bindings: RoleBindings and ClusterRoleBindings through one shape.

func fromRoleBinding(rb *rbacv1.RoleBinding) *binding {
	return &binding{ObjectMeta: rb.ObjectMeta, RoleRef: rb.RoleRef, Subjects: rb.Subjects}
}

func fromClusterRoleBinding(crb *rbacv1.ClusterRoleBinding) *binding {
	return &binding{ObjectMeta: crb.ObjectMeta, RoleRef: crb.RoleRef, Subjects: crb.Subjects}
}

func (c *Controller) cachedBinding(ns, name string) (*binding, error) {
	key, indexer, kind := name, c.clusterRoleBindings, rbacv1.Resource("clusterrolebindings")
	if ns != "" {
		key, indexer, kind = ns+"/"+name, c.roleBindings, rbacv1.Resource("rolebindings")
	}
	obj, ok, err := indexer.GetByKey(key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, apierrors.NewNotFound(kind, name)
	}
	switch b := obj.(type) {
	case *rbacv1.RoleBinding:
		return fromRoleBinding(b), nil
	case *rbacv1.ClusterRoleBinding:
		return fromClusterRoleBinding(b), nil
	}
	return nil, fmt.Errorf("unexpected %T in the binding cache", obj)
}

func (c *Controller) ownedBindings(o owner) []binding {
	var out []binding
	for _, indexer := range []cache.Indexer{c.roleBindings, c.clusterRoleBindings} {
		objs, _ := indexer.ByIndex(indexByOwner, o.indexKey())
		for _, obj := range objs {
			switch b := obj.(type) {
			case *rbacv1.RoleBinding:
				out = append(out, *fromRoleBinding(b))
			case *rbacv1.ClusterRoleBinding:
				out = append(out, *fromClusterRoleBinding(b))
			}
		}
	}
	return out
}

func (c *Controller) liveBinding(ctx context.Context, ns, name string) (*binding, error) {
	if ns == "" {
		crb, err := c.client.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return fromClusterRoleBinding(crb), nil
	}
	rb, err := c.client.RbacV1().RoleBindings(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return fromRoleBinding(rb), nil
}

func (c *Controller) createBinding(ctx context.Context, b binding) error {
	var err error
	if b.Namespace == "" {
		_, err = c.client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: b.ObjectMeta, RoleRef: b.RoleRef, Subjects: b.Subjects}, metav1.CreateOptions{})
	} else {
		_, err = c.client.RbacV1().RoleBindings(b.Namespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: b.ObjectMeta, RoleRef: b.RoleRef, Subjects: b.Subjects}, metav1.CreateOptions{})
	}
	return err
}

func (c *Controller) updateBinding(ctx context.Context, b binding) error {
	var err error
	if b.Namespace == "" {
		_, err = c.client.RbacV1().ClusterRoleBindings().Update(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: b.ObjectMeta, RoleRef: b.RoleRef, Subjects: b.Subjects}, metav1.UpdateOptions{})
	} else {
		_, err = c.client.RbacV1().RoleBindings(b.Namespace).Update(ctx, &rbacv1.RoleBinding{ObjectMeta: b.ObjectMeta, RoleRef: b.RoleRef, Subjects: b.Subjects}, metav1.UpdateOptions{})
	}
	return err
}

func (c *Controller) deleteBinding(ctx context.Context, b binding) error {
	if b.Namespace == "" {
		return c.client.RbacV1().ClusterRoleBindings().Delete(ctx, b.Name, uidPrecondition(b.UID))
	}
	return c.client.RbacV1().RoleBindings(b.Namespace).Delete(ctx, b.Name, uidPrecondition(b.UID))
}
