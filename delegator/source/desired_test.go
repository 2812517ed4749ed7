package source

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

func source(ns, name, sa, user string) owner {
	return fromSource(&v1alpha1.Source{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: "source-uid"},
		Spec:       v1alpha1.SourceSpec{ServiceAccountName: sa, UserName: user},
	})
}

func clusterSource(name string, sa *v1alpha1.ServiceAccountReference, user string) owner {
	return fromClusterSource(&v1alpha1.ClusterSource{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: "cluster-source-uid"},
		Spec:       v1alpha1.ClusterSourceSpec{ServiceAccount: sa, UserName: user},
	})
}

// shape is what a test compares of a binding.
type shape struct {
	Kind, Namespace, Name, Role string
	Subjects                    []rbacv1.Subject
	Owned                       bool
}

func shapes(bs []binding) []shape {
	var out []shape
	for _, b := range bs {
		out = append(out, shape{Kind: b.Kind(), Namespace: b.Namespace, Name: b.Name, Role: b.RoleRef.Name, Subjects: b.Subjects, Owned: len(b.OwnerReferences) > 0})
	}
	return out
}

func TestBindings(t *testing.T) {
	sa := func(ns, name string) rbacv1.Subject {
		return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
	}
	user := func(name string) rbacv1.Subject {
		return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
	}
	cases := []struct {
		name  string
		owner owner
		want  []shape
	}{
		{
			name:  "a Source binds its service account as the seed's manual example does",
			owner: source("default", "c1", "c1", ""),
			want: []shape{
				{Kind: "RoleBinding", Namespace: "default", Name: "admiralty-source-c1", Role: SourceClusterRole, Subjects: []rbacv1.Subject{sa("default", "c1")}, Owned: true},
				{Kind: "ClusterRoleBinding", Name: "admiralty-source-default-c1-cluster-summary-viewer", Role: ClusterSummaryViewerClusterRole, Subjects: []rbacv1.Subject{sa("default", "c1")}},
			},
		},
		{
			name:  "a Source with a user and a service account binds both",
			owner: source("ns", "c1", "c1", "alice"),
			want: []shape{
				{Kind: "RoleBinding", Namespace: "ns", Name: "admiralty-source-c1", Role: SourceClusterRole, Subjects: []rbacv1.Subject{sa("ns", "c1"), user("alice")}, Owned: true},
				{Kind: "ClusterRoleBinding", Name: "admiralty-source-ns-c1-cluster-summary-viewer", Role: ClusterSummaryViewerClusterRole, Subjects: []rbacv1.Subject{sa("ns", "c1"), user("alice")}},
			},
		},
		{
			name:  "a ClusterSource binds both roles cluster-wide, under names no Source can have",
			owner: clusterSource("c1", &v1alpha1.ServiceAccountReference{Namespace: "admiralty", Name: "c1"}, ""),
			want: []shape{
				{Kind: "ClusterRoleBinding", Name: "admiralty-cluster-source-c1", Role: SourceClusterRole, Subjects: []rbacv1.Subject{sa("admiralty", "c1")}, Owned: true},
				{Kind: "ClusterRoleBinding", Name: "admiralty-cluster-source-c1-cluster-summary-viewer", Role: ClusterSummaryViewerClusterRole, Subjects: []rbacv1.Subject{sa("admiralty", "c1")}, Owned: true},
			},
		},
		{
			name:  "a ClusterSource of a user binds the user only",
			owner: clusterSource("c1", nil, "bob"),
			want: []shape{
				{Kind: "ClusterRoleBinding", Name: "admiralty-cluster-source-c1", Role: SourceClusterRole, Subjects: []rbacv1.Subject{user("bob")}, Owned: true},
				{Kind: "ClusterRoleBinding", Name: "admiralty-cluster-source-c1-cluster-summary-viewer", Role: ClusterSummaryViewerClusterRole, Subjects: []rbacv1.Subject{user("bob")}, Owned: true},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, shapes(tc.owner.bindings())); diff != "" {
				t.Errorf("bindings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBindingNamesFitKubernetesLimits(t *testing.T) {
	long := strings.Repeat("n", 250)
	cases := []struct {
		name  string
		owner owner
	}{
		{name: "a Source with a 250-character name gets valid binding names", owner: source(strings.Repeat("s", 63), long, "c1", "")},
		{name: "a ClusterSource with a 250-character name gets valid binding names", owner: clusterSource(long, nil, "bob")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]bool{}
			for _, b := range tc.owner.bindings() {
				if errs := validation.IsDNS1123Subdomain(b.Name); len(errs) > 0 {
					t.Errorf("%s: %v", b, errs)
				}
				if seen[b.Name] {
					t.Errorf("two bindings named %s", b.Name)
				}
				seen[b.Name] = true
			}
		})
	}
	// Two long names that differ only at their end stay apart.
	a := source("ns", long+"a", "c1", "").bindings()
	b := source("ns", long+"b", "c1", "").bindings()
	for i := range a {
		if a[i].Name == b[i].Name {
			t.Errorf("Sources %s and %s both get %s", long+"a", long+"b", a[i].Name)
		}
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name    string
		owner   owner
		wantErr string
	}{
		{name: "a Source with a service account is valid", owner: source("ns", "c1", "c1", "")},
		{name: "a Source with a user only is valid", owner: source("ns", "c1", "", "alice")},
		{name: "a Source without identity says which fields to set", owner: source("ns", "c1", "", ""),
			wantErr: "neither spec.serviceAccountName nor spec.userName is set: a Source names the identity it authorizes"},
		{name: "a Source with an invalid service account name says so", owner: source("ns", "c1", "Not_A_Name", ""),
			wantErr: `spec.serviceAccountName "Not_A_Name" is not a service account name`},
		{name: "a ClusterSource without identity names its own fields", owner: clusterSource("c1", nil, ""),
			wantErr: "neither spec.serviceAccount nor spec.userName is set: a ClusterSource names the identity it authorizes"},
		{name: "a ClusterSource with an invalid namespace says so", owner: clusterSource("c1", &v1alpha1.ServiceAccountReference{Namespace: "Bad.NS", Name: "c1"}, ""),
			wantErr: `spec.serviceAccount.namespace "Bad.NS" is not a namespace name`},
		{name: "a ClusterSource with an invalid service account name says so", owner: clusterSource("c1", &v1alpha1.ServiceAccountReference{Namespace: "ns", Name: "-c1"}, ""),
			wantErr: `spec.serviceAccount.name "-c1" is not a service account name`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.owner.validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("validate() = %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
				t.Errorf("validate() = %v, want an error starting with %q", err, tc.wantErr)
			}
		})
	}
}

func TestGrants(t *testing.T) {
	want := source("ns", "c1", "c1", "alice").bindings()[0]
	cases := []struct {
		name string
		have func(b *binding)
		want bool
	}{
		{name: "the same binding grants", have: func(*binding) {}, want: true},
		{name: "a binding with more subjects grants", have: func(b *binding) {
			b.Subjects = append([]rbacv1.Subject{{Kind: rbacv1.GroupKind, Name: "ops"}}, b.Subjects...)
		}, want: true},
		{name: "a user subject without API group grants, as the API server defaults it", have: func(b *binding) {
			b.Subjects = []rbacv1.Subject{b.Subjects[0], {Kind: rbacv1.UserKind, Name: "alice"}}
		}, want: true},
		{name: "a binding missing a subject does not grant", have: func(b *binding) { b.Subjects = b.Subjects[:1] }},
		{name: "a binding to another role does not grant", have: func(b *binding) { b.RoleRef = clusterRole("edit") }},
		{name: "a binding of a service account of another namespace does not grant", have: func(b *binding) {
			b.Subjects = []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "other", Name: "c1"}, b.Subjects[1]}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			have := want
			have.Subjects = append([]rbacv1.Subject(nil), want.Subjects...)
			tc.have(&have)
			if got := grants(have, want); got != tc.want {
				t.Errorf("grants() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTokenSecret(t *testing.T) {
	o := source("ns", "c1", "c1", "")
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c1", UID: "sa-uid"}}
	s := o.tokenSecret(sa)

	want := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns",
			Name:      tokenSecretName(o, sa),
			Labels:    map[string]string{LabelManagedBy: ManagedBy},
			Annotations: map[string]string{
				AnnotationSource:             "ns/c1",
				corev1.ServiceAccountNameKey: "c1",
				corev1.ServiceAccountUIDKey:  "sa-uid",
			},
			OwnerReferences: []metav1.OwnerReference{o.controllerRef()},
		},
		Type: corev1.SecretTypeServiceAccountToken,
	}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("token Secret (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(s.Name, "c1-token-") {
		t.Errorf("token Secret name %q does not start with the service account's name", s.Name)
	}
	if got := tokenSecretName(o, sa); got != s.Name {
		t.Errorf("tokenSecretName() is not stable: %q then %q", s.Name, got)
	}
	recreated := sa.DeepCopy()
	recreated.UID = "sa-uid-2"
	if tokenSecretName(o, recreated) == s.Name {
		t.Errorf("a recreated service account gets the name of the old one's token Secret, %q", s.Name)
	}
	if !o.createdBy(s) {
		t.Errorf("the Source does not recognize its token Secret")
	}
	if other := source("ns", "c2", "c1", ""); other.createdBy(s) {
		t.Errorf("another Source claims the token Secret")
	}
	if !isTokenOf(s, sa) || isTokenOf(s, recreated) {
		t.Errorf("isTokenOf() = %v for the service account, %v for a new incarnation; want true, false", isTokenOf(s, sa), isTokenOf(s, recreated))
	}
}

func TestOwnerReferences(t *testing.T) {
	cases := []struct {
		name      string
		owner     owner
		namespace string
		wantOwned bool
	}{
		{name: "a Source owns what it creates in its namespace", owner: source("ns", "c1", "c1", ""), namespace: "ns", wantOwned: true},
		{name: "a Source cannot own a cluster-scoped object", owner: source("ns", "c1", "c1", ""), namespace: ""},
		{name: "a ClusterSource owns a cluster-scoped object", owner: clusterSource("c1", nil, "bob"), namespace: "", wantOwned: true},
		{name: "a ClusterSource owns an object of any namespace", owner: clusterSource("c1", nil, "bob"), namespace: "admiralty", wantOwned: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.owner.meta(tc.namespace, "x")
			if got := len(m.OwnerReferences) == 1; got != tc.wantOwned {
				t.Errorf("owned = %v, want %v (%+v)", got, tc.wantOwned, m.OwnerReferences)
			}
			if got, _ := markedBy(&m); got != tc.owner.indexKey() {
				t.Errorf("markedBy() = %q, want %q", got, tc.owner.indexKey())
			}
		})
	}
}
