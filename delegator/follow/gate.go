package follow

import (
	"context"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/controller"
	"admiralty.io/multicluster-scheduler/names"
)

// ReasonWaitingForDependencies is the reason of a chaperon's
// PodScheduled=False condition while its delegate waits for the copies of
// the config maps and secrets it uses (and of the Event that says so). A
// source's scheduler keeps waiting on it; only Unschedulable is a refusal.
const ReasonWaitingForDependencies = "WaitingForDependencies"

// ReasonDependenciesMissing is the reason of that condition when the
// source said it copied the dependencies but a copy is missing (the target
// deleted it meanwhile): the source then writes them again.
const ReasonDependenciesMissing = "DependenciesMissing"

// WaitingStatus is a chaperon's status while its delegate waits for its
// dependencies, for one of the two reasons above.
func WaitingStatus(cur corev1.PodStatus, reason, message string, now metav1.Time) corev1.PodStatus {
	cond := corev1.PodCondition{
		Type:               corev1.PodScheduled,
		Status:             corev1.ConditionFalse,
		Reason:             reason,
		Message:            message,
		LastTransitionTime: now,
	}
	for _, c := range cur.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == cond.Status && c.Reason == cond.Reason {
			cond.LastTransitionTime = c.LastTransitionTime
		}
	}
	return corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{cond}}
}

// IsWaiting tells whether a chaperon's status is a WaitingStatus.
func IsWaiting(s corev1.PodStatus) bool {
	return waitingReason(s) != ""
}

func waitingReason(s corev1.PodStatus) string {
	for _, c := range s.Conditions {
		if c.Type == corev1.PodScheduled && (c.Reason == ReasonWaitingForDependencies || c.Reason == ReasonDependenciesMissing) {
			return c.Reason
		}
	}
	return ""
}

// Verdict of the Gate on a chaperon: ready (zero value), waiting, or a
// conflict that forbids its delegate.
type Verdict struct {
	// Waiting, if not empty, says what the delegate waits for, and
	// Reason why.
	Waiting string
	Reason  string
	// Conflict, if not nil, says which object of this cluster the delegate
	// would use although it is not its source's copy.
	Conflict error
}

// Gate is the target side: it tells the chaperon controller whether a
// delegate's config maps and secrets are there (the source's copies, and
// nothing else of that name), wakes it when copies come, and deletes the
// copies that no chaperon of their source refers to any more.
type Gate struct {
	clusterName string
	client      kubernetes.Interface
	mcClient    versioned.Interface
	chaperons   cache.SharedIndexInformer
	factory     informers.SharedInformerFactory
	copies      map[*kind]cache.SharedIndexInformer
	ingresses   cache.SharedIndexInformer
	gc          *controller.Controller

	mu       sync.Mutex
	onChange []func(chaperonKey string)
}

// NewGate returns the gate of the chaperons of chaperonInformer, which
// must not be started yet (an index is added to it).
func NewGate(clusterName string, client kubernetes.Interface, mcClient versioned.Interface, chaperonInformer cache.SharedIndexInformer) *Gate {
	g := &Gate{
		clusterName: clusterName,
		client:      client,
		mcClient:    mcClient,
		chaperons:   chaperonInformer,
		// Copies only, in every namespace: never the cluster's own
		// config maps and secrets.
		factory: informers.NewSharedInformerFactoryWithOptions(client, 0,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelOriginCluster })),
	}
	g.copies = map[*kind]cache.SharedIndexInformer{
		kindConfigMap: g.factory.Core().V1().ConfigMaps().Informer(),
		kindSecret:    g.factory.Core().V1().Secrets().Informer(),
	}
	// Ingress copies keep their TLS secrets' copies.
	g.ingresses = g.factory.Networking().V1().Ingresses().Informer()
	_, _ = g.ingresses.AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if ing, ok := controller.Object(obj).(*networkingv1.Ingress); ok {
				for _, name := range IngressSecrets(ing) {
					g.gc.EnqueueKey(gcKey(kindSecret, ing.Namespace, name))
				}
			}
		},
	})
	g.gc = controller.New("follow-gc", 2, g.collect)
	_ = chaperonInformer.AddIndexers(cache.Indexers{indexRefs: chaperonRefKeys})
	for k, inf := range g.copies {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { g.copyChanged(k, obj) },
			UpdateFunc: func(_, obj any) { g.copyChanged(k, obj) },
			DeleteFunc: func(obj any) { g.copyChanged(k, obj) },
		})
		g.gc.WaitFor(inf.HasSynced)
	}
	// A chaperon that goes may leave copies that nothing uses.
	_, _ = chaperonInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			ch, ok := controller.Object(obj).(*v1alpha1.PodChaperon)
			if !ok {
				return
			}
			for _, r := range References(&ch.Spec) {
				g.gc.EnqueueKey(gcKey(kindNamed(r.Kind), ch.Namespace, r.Name))
			}
		},
	})
	g.gc.WaitFor(chaperonInformer.HasSynced, g.ingresses.HasSynced)
	return g
}

// Notify registers f, called with the key (namespace/name) of every
// chaperon whose dependencies may have changed.
func (g *Gate) Notify(f func(chaperonKey string)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.onChange = append(g.onChange, f)
}

// HasSynced tells whether the copies are known.
func (g *Gate) HasSynced() bool {
	for _, inf := range g.copies {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// Name of the garbage collector's loop.
func (g *Gate) Name() string { return g.gc.Name() }

// Start runs the copies' informers and the garbage collector until ctx is
// done.
func (g *Gate) Start(ctx context.Context) error {
	g.factory.Start(ctx.Done())
	defer g.factory.Shutdown()
	return g.gc.Start(ctx)
}

func gcKey(k *kind, ns, name string) string { return k.name + "|" + ns + "|" + name }

func (g *Gate) copyChanged(k *kind, obj any) {
	o, ok := controller.Object(obj).(metav1.Object)
	if !ok {
		return
	}
	g.gc.EnqueueKey(gcKey(k, o.GetNamespace(), o.GetName()))
	chs := referring(g.chaperons, o.GetNamespace(), Ref{Kind: k.name, Name: o.GetName()})
	g.mu.Lock()
	fs := g.onChange
	g.mu.Unlock()
	for _, ch := range chs {
		for _, f := range fs {
			f(ch.Namespace + "/" + ch.Name)
		}
	}
}

// Check tells whether the delegate of ch may be made: every config map and
// secret it refers to is its source's copy, or missing and not expected
// (the source does not have it either). Chaperons of this very cluster (a
// cluster that targets itself) use its objects as they are.
func (g *Gate) Check(ctx context.Context, ch *v1alpha1.PodChaperon) (Verdict, error) {
	parent := ch.Labels[v1alpha1.LabelParentClusterName]
	if parent == "" || parent == names.Fit(g.clusterName, names.MaxLabel) {
		return Verdict{}, nil
	}
	refs := References(&ch.Spec)
	if len(refs) == 0 {
		return Verdict{}, nil
	}
	followed, marked := ch.Annotations[AnnotationFollowed]
	listed := map[Ref]bool{}
	for _, r := range SplitRefs(followed) {
		listed[r] = true
	}
	var missing []string
	for _, r := range refs {
		k := kindNamed(r.Kind)
		obj, err := g.lookup(ctx, k, ch.Namespace, r.Name)
		if err != nil {
			return Verdict{}, err
		}
		if obj != nil {
			l := obj.GetLabels()
			if l[LabelOriginCluster] == parent && l[LabelOriginNamespace] == ch.Namespace && l[LabelOriginName] == names.Fit(r.Name, names.MaxLabel) {
				continue
			}
			return Verdict{Conflict: fmt.Errorf("%s %s/%s exists in this cluster and is not the copy of %s's: it is not overwritten, and the delegate may not use it", r.Kind, ch.Namespace, r.Name, parent)}, nil
		}
		if !marked || listed[r] {
			missing = append(missing, r.String())
		}
	}
	switch {
	case len(missing) > 0 && !marked:
		return Verdict{Reason: ReasonWaitingForDependencies, Waiting: fmt.Sprintf("waiting for %s to copy %s here", parent, strings.Join(missing, ", "))}, nil
	case len(missing) > 0:
		return Verdict{Reason: ReasonDependenciesMissing, Waiting: fmt.Sprintf("%s copied %s, but %s is missing here", parent, followed, strings.Join(missing, ", "))}, nil
	}
	return Verdict{}, nil
}

// lookup returns the object of that name: a copy from the cache, else
// whatever the API server has (an object that is not a copy, or a copy the
// cache has not seen yet).
func (g *Gate) lookup(ctx context.Context, k *kind, ns, name string) (metav1.Object, error) {
	if obj, exists, err := g.copies[k].GetStore().GetByKey(ns + "/" + name); err == nil && exists {
		return obj.(metav1.Object), nil
	}
	var obj metav1.Object
	var err error
	switch k {
	case kindConfigMap:
		obj, err = g.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	case kindSecret:
		obj, err = g.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	default:
		return nil, nil
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return obj, err
}

// collect deletes a copy that no chaperon of its source refers to.
func (g *Gate) collect(ctx context.Context, key string) (controller.Result, error) {
	parts := strings.SplitN(key, "|", 3)
	if len(parts) != 3 {
		return controller.Result{}, nil
	}
	k := kindNamed(parts[0])
	if k == nil || g.copies[k] == nil {
		return controller.Result{}, nil
	}
	ns, name := parts[1], parts[2]
	obj, exists, err := g.copies[k].GetStore().GetByKey(ns + "/" + name)
	if err != nil || !exists {
		return controller.Result{}, err
	}
	cp := obj.(metav1.Object)
	origin := cp.GetLabels()[LabelOriginCluster]
	r := Ref{Kind: k.name, Name: name}
	uses := func(ch *v1alpha1.PodChaperon) bool {
		return ch.Labels[v1alpha1.LabelParentClusterName] == origin && ch.DeletionTimestamp == nil
	}
	for _, ch := range referring(g.chaperons, ns, r) {
		if uses(ch) {
			return controller.Result{}, nil
		}
	}
	// The cache may not show a chaperon that came just before its copies:
	// ask the API server before deleting.
	list, err := g.mcClient.MulticlusterV1alpha1().PodChaperons(ns).List(ctx, metav1.ListOptions{
		LabelSelector: v1alpha1.LabelParentClusterName + "=" + origin,
	})
	if err != nil {
		return controller.Result{}, err
	}
	for i := range list.Items {
		ch := &list.Items[i]
		if !uses(ch) {
			continue
		}
		for _, cr := range References(&ch.Spec) {
			if cr == r {
				return controller.Result{}, nil
			}
		}
	}
	if k == kindSecret {
		// The TLS secret of an ingress copy of the same origin.
		ingresses, err := g.client.NetworkingV1().Ingresses(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelOriginCluster + "=" + origin})
		if err != nil {
			return controller.Result{}, err
		}
		for i := range ingresses.Items {
			for _, s := range IngressSecrets(&ingresses.Items[i]) {
				if s == name {
					return controller.Result{}, nil
				}
			}
		}
	}
	uid := cp.GetUID()
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
	switch k {
	case kindConfigMap:
		err = g.client.CoreV1().ConfigMaps(ns).Delete(ctx, name, opts)
	case kindSecret:
		err = g.client.CoreV1().Secrets(ns).Delete(ctx, name, opts)
	}
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return controller.Result{}, fmt.Errorf("deleting unused copy %s %s/%s: %w", k.name, ns, name, err)
	}
	klog.FromContext(ctx).V(2).Info("Deleted a copy no delegate uses", "kind", k.name, "object", klog.KRef(ns, name), "origin", origin)
	return controller.Result{}, nil
}
