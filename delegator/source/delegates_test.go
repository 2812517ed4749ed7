package source

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

func TestDesiredDelegatesRole(t *testing.T) {
	const ns = "team"
	// The chaperons that exist in ns, by name.
	chaperons := map[string]types.UID{"web-1": "uid-web-1", "web-2": "uid-web-2", "job-1": "uid-job-1", "victim": "uid-victim"}
	chaperonUID := func(name string) (types.UID, bool) {
		uid, ok := chaperons[name]
		return uid, ok
	}
	pod := func(ns, name string, ref *metav1.OwnerReference) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if ref != nil {
			p.OwnerReferences = []metav1.OwnerReference{*ref}
		}
		return p
	}
	ctrl := func(kind, apiVersion, name string, uid types.UID) *metav1.OwnerReference {
		return &metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: new(true)}
	}
	delegate := func(name string) *corev1.Pod {
		return pod(ns, name, ctrl("PodChaperon", v1alpha1.SchemeGroupVersion.String(), name, chaperons[name]))
	}
	src := func(ns, name, sa, user string) *v1alpha1.Source {
		return &v1alpha1.Source{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: v1alpha1.SourceSpec{ServiceAccountName: sa, UserName: user}}
	}
	csrc := func(name, saNS, sa string) *v1alpha1.ClusterSource {
		return &v1alpha1.ClusterSource{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.ClusterSourceSpec{ServiceAccount: &v1alpha1.ServiceAccountReference{Namespace: saNS, Name: sa}}}
	}
	saSubject := func(ns, name string) rbacv1.Subject {
		return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
	}
	deleting := src(ns, "leaving", "leaving", "")
	deleting.DeletionTimestamp = &metav1.Time{}

	cases := []struct {
		name           string
		pods           []*corev1.Pod
		sources        []*v1alpha1.Source
		clusterSources []*v1alpha1.ClusterSource
		// wantNames nil: no Role and no RoleBinding.
		wantNames    []string
		wantSubjects []rbacv1.Subject
	}{
		{
			name:         "the delegates of the namespace, sorted, for its Source",
			pods:         []*corev1.Pod{delegate("web-2"), delegate("job-1"), delegate("web-1")},
			sources:      []*v1alpha1.Source{src(ns, "c1", "c1", "")},
			wantNames:    []string{"job-1", "web-1", "web-2"},
			wantSubjects: []rbacv1.Subject{saSubject(ns, "c1")},
		},
		{
			name: "pods that are not delegates are never named",
			pods: []*corev1.Pod{
				delegate("web-1"),
				// Not controlled by anything; named like a chaperon (a
				// chaperon named after someone else's pod gains nothing).
				pod(ns, "victim", nil),
				// Controlled by a ReplicaSet.
				pod(ns, "web-2", ctrl("ReplicaSet", "apps/v1", "web", "uid-web-2")),
				// Claims a chaperon that exists, with another UID (an older
				// chaperon's leftover, or a forgery).
				pod(ns, "job-1", ctrl("PodChaperon", v1alpha1.SchemeGroupVersion.String(), "job-1", "uid-old")),
				// Claims a chaperon that does not exist.
				pod(ns, "ghost", ctrl("PodChaperon", v1alpha1.SchemeGroupVersion.String(), "ghost", "uid-ghost")),
				// Claims a chaperon of another name than its own.
				pod(ns, "other", ctrl("PodChaperon", v1alpha1.SchemeGroupVersion.String(), "web-2", "uid-web-2")),
				// A kind of that name in another group.
				pod(ns, "web-2", ctrl("PodChaperon", "example.com/v1", "web-2", "uid-web-2")),
				// A delegate of another namespace.
				pod("elsewhere", "web-2", ctrl("PodChaperon", v1alpha1.SchemeGroupVersion.String(), "web-2", "uid-web-2")),
			},
			sources:      []*v1alpha1.Source{src(ns, "c1", "c1", "")},
			wantNames:    []string{"web-1"},
			wantSubjects: []rbacv1.Subject{saSubject(ns, "c1")},
		},
		{
			name:    "no delegate: no Role (an empty resourceNames would grant every pod)",
			pods:    []*corev1.Pod{pod(ns, "victim", nil)},
			sources: []*v1alpha1.Source{src(ns, "c1", "c1", "")},
		},
		{
			name: "no Source of the namespace and no ClusterSource: no Role",
			pods: []*corev1.Pod{delegate("web-1")},
			// Another namespace's Source, an invalid one and one being deleted.
			sources: []*v1alpha1.Source{src("elsewhere", "c1", "c1", ""), src(ns, "invalid", "", ""), deleting},
		},
		{
			name: "the Sources of the namespace and every ClusterSource share the Role, each subject once, sorted",
			pods: []*corev1.Pod{delegate("web-1")},
			sources: []*v1alpha1.Source{
				src(ns, "c3", "c3", "alice"),
				src(ns, "c1", "c1", ""),
				src(ns, "c1-again", "c1", ""),
				src(ns, "bad", "Not_A_Name", ""),
				deleting,
			},
			clusterSources: []*v1alpha1.ClusterSource{csrc("all", "admiralty", "c9"), csrc("bad", "Bad NS", "x")},
			wantNames:      []string{"web-1"},
			wantSubjects: []rbacv1.Subject{
				saSubject("admiralty", "c9"),
				saSubject(ns, "c1"),
				saSubject(ns, "c3"),
				{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			role, binding := DesiredDelegatesRole(ns, tc.pods, chaperonUID, tc.sources, tc.clusterSources)
			if tc.wantNames == nil {
				if role != nil || binding != nil {
					t.Fatalf("got Role %v and RoleBinding %v, want none", role, binding)
				}
				return
			}
			if role == nil || binding == nil {
				t.Fatalf("got Role %v and RoleBinding %v, want both", role, binding)
			}
			wantRules := []rbacv1.PolicyRule{{
				APIGroups:     []string{""},
				Resources:     []string{"pods", "pods/log", "pods/exec", "pods/attach", "pods/portforward"},
				Verbs:         []string{"get", "create"},
				ResourceNames: tc.wantNames,
			}}
			if diff := cmp.Diff(wantRules, role.Rules); diff != "" {
				t.Errorf("Role rules (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantSubjects, binding.Subjects); diff != "" {
				t.Errorf("RoleBinding subjects (-want +got):\n%s", diff)
			}
			wantRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: DelegatesRole}
			for what, m := range map[string]metav1.ObjectMeta{"Role": role.ObjectMeta, "RoleBinding": binding.ObjectMeta} {
				if m.Namespace != ns || m.Name != DelegatesRole || !ownDelegates(&m) {
					t.Errorf("%s %s/%s labels %v: want %s/%s, managed by the delegates controller", what, m.Namespace, m.Name, m.Labels, ns, DelegatesRole)
				}
			}
			if binding.RoleRef != wantRef {
				t.Errorf("RoleBinding roleRef %v, want %v", binding.RoleRef, wantRef)
			}
		})
	}
}
