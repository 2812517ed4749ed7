package source

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/names"
)

// The ClusterRoles that sources are bound to (config/rbac/source-roles.yaml).
const (
	// SourceClusterRole is what a source does in a target: PodChaperons and
	// the objects that follow its pods, in the namespaces it is bound to.
	SourceClusterRole = "multicluster-scheduler-source"
	// ClusterSummaryViewerClusterRole reads ClusterSummaries, which are
	// cluster-scoped, so even a namespaced Source needs it cluster-wide.
	ClusterSummaryViewerClusterRole = "multicluster-scheduler-cluster-summary-viewer"
)

// Keys that mark what the controller created.
const (
	// LabelManagedBy (with value ManagedBy) is on every object the source
	// controller creates; its informers watch only those.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "admiralty-source-controller"
	// AnnotationSource names the Source (namespace/name) that created an
	// object, AnnotationClusterSource the ClusterSource (name). A binding is
	// touched only by the Source it names: two Sources whose binding names
	// collide never take each other's.
	AnnotationSource        = v1alpha1.GroupName + "/source"
	AnnotationClusterSource = v1alpha1.GroupName + "/cluster-source"
	// Finalizer holds a Source until its cluster-summary-viewer
	// ClusterRoleBinding is deleted: a cluster-scoped object cannot have a
	// namespaced owner, so the garbage collector cannot do it.
	Finalizer = v1alpha1.GroupName + "/cluster-role-bindings"
)

// Kinds of owners.
const (
	KindSource        = "Source"
	KindClusterSource = "ClusterSource"
)

// owner is a Source or a ClusterSource: the two differ in scope only.
type owner struct {
	Kind       string
	Namespace  string // the Source's; empty for a ClusterSource
	Name       string
	UID        types.UID
	Generation int64
	// ServiceAccount is the identity to create and bind, if any.
	ServiceAccount *types.NamespacedName
	UserName       string
	// Object is the Source or ClusterSource itself (owner references,
	// Events, status).
	Object runtime.Object
}

func fromSource(s *v1alpha1.Source) owner {
	o := owner{Kind: KindSource, Namespace: s.Namespace, Name: s.Name, UID: s.UID, Generation: s.Generation, UserName: s.Spec.UserName, Object: s}
	if s.Spec.ServiceAccountName != "" {
		o.ServiceAccount = &types.NamespacedName{Namespace: s.Namespace, Name: s.Spec.ServiceAccountName}
	}
	return o
}

func fromClusterSource(s *v1alpha1.ClusterSource) owner {
	o := owner{Kind: KindClusterSource, Name: s.Name, UID: s.UID, Generation: s.Generation, UserName: s.Spec.UserName, Object: s}
	if sa := s.Spec.ServiceAccount; sa != nil {
		o.ServiceAccount = &types.NamespacedName{Namespace: sa.Namespace, Name: sa.Name}
	}
	return o
}

// Key is the owner's work-queue key: namespace/name, or name.
func (o owner) Key() string {
	if o.Namespace == "" {
		return o.Name
	}
	return o.Namespace + "/" + o.Name
}

// String names the owner for messages: "Source ns/name".
func (o owner) String() string { return o.Kind + " " + o.Key() }

// mark returns the annotation that names the owner on what it created.
func (o owner) mark() (string, string) {
	if o.Kind == KindClusterSource {
		return AnnotationClusterSource, o.Name
	}
	return AnnotationSource, o.Key()
}

// indexKey is the owner's key in the indexes of created objects.
func (o owner) indexKey() string { return o.Kind + "/" + o.Key() }

// markedBy returns the index key of the owner that created obj, if any.
func markedBy(obj metav1.Object) (string, bool) {
	if obj.GetLabels()[LabelManagedBy] != ManagedBy {
		return "", false
	}
	a := obj.GetAnnotations()
	if k, ok := a[AnnotationSource]; ok {
		return KindSource + "/" + k, true
	}
	if k, ok := a[AnnotationClusterSource]; ok {
		return KindClusterSource + "/" + k, true
	}
	return "", false
}

// createdBy says whether o created obj.
func (o owner) createdBy(obj metav1.Object) bool {
	k, ok := markedBy(obj)
	return ok && k == o.indexKey()
}

// meta returns the metadata of an object o creates: name, the marks, and
// an owner reference if ownable (a namespaced owner cannot own a
// cluster-scoped object, nor an object of another namespace).
func (o owner) meta(namespace, name string) metav1.ObjectMeta {
	k, v := o.mark()
	m := metav1.ObjectMeta{
		Name:        name,
		Namespace:   namespace,
		Labels:      map[string]string{LabelManagedBy: ManagedBy},
		Annotations: map[string]string{k: v},
	}
	if o.Namespace == "" || o.Namespace == namespace {
		m.OwnerReferences = []metav1.OwnerReference{o.controllerRef()}
	}
	return m
}

func (o owner) controllerRef() metav1.OwnerReference {
	return *metav1.NewControllerRef(&metav1.ObjectMeta{Name: o.Name, UID: o.UID},
		v1alpha1.SchemeGroupVersion.WithKind(o.Kind))
}

// sharedRef is the owner reference a ServiceAccount gets from each owner
// that uses it: not a controller reference, since several Sources may name
// one ServiceAccount, and the garbage collector deletes it with the last.
func (o owner) sharedRef() metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: v1alpha1.SchemeGroupVersion.String(),
		Kind:       o.Kind,
		Name:       o.Name,
		UID:        o.UID,
	}
}

// validate says what is wrong with the spec, in terms a user can act on.
func (o owner) validate() error {
	field := "spec.serviceAccountName"
	if o.Kind == KindClusterSource {
		field = "spec.serviceAccount"
	}
	if o.ServiceAccount == nil && o.UserName == "" {
		return fmt.Errorf("neither %s nor spec.userName is set: a %s names the identity it authorizes", field, o.Kind)
	}
	if sa := o.ServiceAccount; sa != nil {
		if o.Kind == KindClusterSource {
			if errs := validation.IsDNS1123Label(sa.Namespace); len(errs) > 0 {
				return fmt.Errorf("spec.serviceAccount.namespace %q is not a namespace name: %s", sa.Namespace, strings.Join(errs, "; "))
			}
			field += ".name"
		}
		if errs := validation.IsDNS1123Subdomain(sa.Name); len(errs) > 0 {
			return fmt.Errorf("%s %q is not a service account name: %s", field, sa.Name, strings.Join(errs, "; "))
		}
	}
	return nil
}

// subjects are who the bindings bind: the service account and/or the user.
func (o owner) subjects() []rbacv1.Subject {
	var s []rbacv1.Subject
	if sa := o.ServiceAccount; sa != nil {
		s = append(s, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: sa.Namespace})
	}
	if o.UserName != "" {
		s = append(s, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: o.UserName})
	}
	return s
}

// binding is a RoleBinding (Namespace set) or a ClusterRoleBinding.
type binding struct {
	metav1.ObjectMeta
	RoleRef  rbacv1.RoleRef
	Subjects []rbacv1.Subject
}

// Kind is RoleBinding or ClusterRoleBinding.
func (b binding) Kind() string {
	if b.Namespace == "" {
		return "ClusterRoleBinding"
	}
	return "RoleBinding"
}

func (b binding) String() string {
	if b.Namespace == "" {
		return b.Kind() + " " + b.Name
	}
	return b.Kind() + " " + b.Namespace + "/" + b.Name
}

func clusterRole(name string) rbacv1.RoleRef {
	return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}
}

// bindings are what o must have: the source role in its namespace (a
// Source) or everywhere (a ClusterSource), and the cluster summary viewer
// role cluster-wide. Names are the seed's manual example's for a Source
// (admiralty-source-NAME, admiralty-source-NS-NAME-cluster-summary-viewer)
// and the original project's for a ClusterSource
// (admiralty-cluster-source-NAME...), which never collide with a Source's;
// a name too long for Kubernetes is cut and suffixed with a hash.
func (o owner) bindings() []binding {
	subjects := o.subjects()
	fit := func(s string) string { return names.Fit(s, names.MaxSubdomain) }
	if o.Kind == KindClusterSource {
		prefix := "admiralty-cluster-source-" + o.Name
		return []binding{
			{ObjectMeta: o.meta("", fit(prefix)), RoleRef: clusterRole(SourceClusterRole), Subjects: subjects},
			{ObjectMeta: o.meta("", fit(prefix+"-cluster-summary-viewer")), RoleRef: clusterRole(ClusterSummaryViewerClusterRole), Subjects: subjects},
		}
	}
	return []binding{
		{ObjectMeta: o.meta(o.Namespace, fit("admiralty-source-"+o.Name)), RoleRef: clusterRole(SourceClusterRole), Subjects: subjects},
		{ObjectMeta: o.meta("", fit("admiralty-source-"+o.Namespace+"-"+o.Name+"-cluster-summary-viewer")), RoleRef: clusterRole(ClusterSummaryViewerClusterRole), Subjects: subjects},
	}
}

// grants says whether an existing binding gives at least what want gives:
// same role, and every subject of want among its subjects.
func grants(have, want binding) bool {
	if have.RoleRef != want.RoleRef {
		return false
	}
	for _, s := range want.Subjects {
		if !slices.ContainsFunc(have.Subjects, func(h rbacv1.Subject) bool { return sameSubject(h, s) }) {
			return false
		}
	}
	return true
}

// sameSubject compares subjects as the authorizer does: a User's or
// Group's API group may be left empty.
func sameSubject(a, b rbacv1.Subject) bool {
	return a.Kind == b.Kind && a.Name == b.Name && a.Namespace == b.Namespace
}

// tokenSecretName is a stable name for o's token Secret of sa: the same
// owner and service account always give the same name, so a retry finds the
// Secret it created instead of making a second one; another incarnation of
// either gives another name, so a Secret that the garbage collector is
// about to delete is never mistaken for the new one.
func tokenSecretName(o owner, sa *corev1.ServiceAccount) string {
	return names.Fit(sa.Name+"-token-"+names.Hash(string(o.UID)+"/"+string(sa.UID), 5), names.MaxSubdomain)
}

// tokenSecret is the long-lived token Secret o creates for sa.
// kube-controller-manager's token controller fills in the token (and
// deletes the Secret if the service account goes).
func (o owner) tokenSecret(sa *corev1.ServiceAccount) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: o.meta(sa.Namespace, tokenSecretName(o, sa)),
		Type:       corev1.SecretTypeServiceAccountToken,
	}
	s.Annotations[corev1.ServiceAccountNameKey] = sa.Name
	s.Annotations[corev1.ServiceAccountUIDKey] = string(sa.UID)
	return s
}

// isTokenOf says whether s is a token Secret of sa (this incarnation).
func isTokenOf(s *corev1.Secret, sa *corev1.ServiceAccount) bool {
	if s.Type != corev1.SecretTypeServiceAccountToken || s.Namespace != sa.Namespace ||
		s.Annotations[corev1.ServiceAccountNameKey] != sa.Name {
		return false
	}
	uid := s.Annotations[corev1.ServiceAccountUIDKey]
	return uid == "" || uid == string(sa.UID)
}

// listsSecret says whether sa's .secrets names the Secret, which is what
// the seed's exchange reads (.secrets[0].name).
func listsSecret(sa *corev1.ServiceAccount, name string) bool {
	return slices.ContainsFunc(sa.Secrets, func(r corev1.ObjectReference) bool { return r.Name == name })
}

func hasOwnerRef(obj metav1.Object, uid types.UID) bool {
	return slices.ContainsFunc(obj.GetOwnerReferences(), func(r metav1.OwnerReference) bool { return r.UID == uid })
}
