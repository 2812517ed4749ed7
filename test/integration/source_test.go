package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/source"
)

// A Source in cluster2, as in the seed's Getting Started: the source
// controller makes the service account, its token Secret listed in
// .secrets and the two bindings; both the seed's kubectl+jq exchange and
// `kubectl admiralty export` turn it into a kubeconfig Secret in cluster1
// that authenticates as that service account, with exactly the namespaced
// grants; deleting the Source takes back what it created.
func TestSourceGrantsANamespacedIdentity(t *testing.T) {
	c1, c2 := sandbox.Clusters[0], sandbox.Clusters[1]
	ctx := testContext(t, 3*time.Minute)
	mc2 := versioned.NewForConfigOrDie(c2.Config)
	ns := namespace(t, c2, "src", nil)
	other := namespace(t, c2, "src-other", nil)
	ns1 := namespace(t, c1, "src", nil)

	applySource(t, c2, ns)
	cond := waitSourceCondition(ctx, t, mc2, ns, "c1", metav1.ConditionTrue, source.ReasonAuthorized)
	waitEvent(ctx, t, c2, ns, "Source", "c1", source.ReasonAuthorized)
	src, err := mc2.MulticlusterV1alpha1().Sources(ns).Get(ctx, "c1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cond.ObservedGeneration != src.Generation {
		t.Errorf("Ready observed generation %d, want %d", cond.ObservedGeneration, src.Generation)
	}

	sa, err := c2.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "c1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sa.Secrets) == 0 {
		t.Fatalf("service account %s/c1 lists no secret", ns)
	}
	tokenName := sa.Secrets[0].Name
	token, err := c2.Client.CoreV1().Secrets(ns).Get(ctx, tokenName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if token.Type != corev1.SecretTypeServiceAccountToken || token.Annotations[corev1.ServiceAccountNameKey] != "c1" || len(token.Data[corev1.ServiceAccountTokenKey]) == 0 {
		t.Errorf("Secret %s: type %s, service account %q, %d token bytes; want a filled service account token of c1",
			tokenName, token.Type, token.Annotations[corev1.ServiceAccountNameKey], len(token.Data[corev1.ServiceAccountTokenKey]))
	}
	if !ownedBy(token.OwnerReferences, src.UID) || !ownedBy(sa.OwnerReferences, src.UID) {
		t.Errorf("the token Secret and the service account the Source created are not owned by it: %v, %v", token.OwnerReferences, sa.OwnerReferences)
	}

	saSubject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "c1", Namespace: ns}}
	rb, err := c2.Client.RbacV1().RoleBindings(ns).Get(ctx, "admiralty-source-c1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkBinding(t, rb.RoleRef, rb.Subjects, "multicluster-scheduler-source", saSubject)
	crbName := "admiralty-source-" + ns + "-c1-cluster-summary-viewer"
	crb, err := c2.Client.RbacV1().ClusterRoleBindings().Get(ctx, crbName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkBinding(t, crb.RoleRef, crb.Subjects, "multicluster-scheduler-cluster-summary-viewer", saSubject)

	// The seed's exchange, verbatim but for the contexts, the namespaces and
	// jq's --raw, an abbreviation that jq 1.6 and later reject.
	shell(t, ctx, fmt.Sprintf(`
NAMESPACE=%s
SECRET_NAME=$(kubectl --context "cluster2" get serviceaccount c1 \
  --namespace "$NAMESPACE" \
  --output json | \
  jq --raw-output .secrets[0].name)
TOKEN=$(kubectl --context "cluster2" get secret $SECRET_NAME \
  --namespace "$NAMESPACE" \
  --output json | \
  jq --raw-output .data.token | \
  base64 --decode)
CONFIG=$(kubectl --context "cluster2" config view \
  --minify \
  --raw \
  --output json | \
  jq '.users[0].user={token:"'$TOKEN'"}')
kubectl --context "cluster1" create secret generic c2 \
  --namespace "%s" \
  --from-literal=config="$CONFIG"
`, ns, ns1))
	// And its one-pipe replacement.
	shell(t, ctx, fmt.Sprintf(`kubectl admiralty export c1 --context cluster2 -n %s --as c2-export | kubectl --context cluster1 -n %s apply -f -`, ns, ns1))

	wantUser := "system:serviceaccount:" + ns + ":c1"
	for _, name := range []string{"c2", "c2-export"} {
		t.Run("kubeconfig Secret "+name, func(t *testing.T) {
			s, err := c1.Client.CoreV1().Secrets(ns1).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			client, mc := clientsFromKubeconfig(t, s.Data["config"])
			checkUser(ctx, t, client, wantUser)
			allowed(ctx, t, "list PodChaperons in its namespace", func(ctx context.Context) error {
				_, err := mc.MulticlusterV1alpha1().PodChaperons(ns).List(ctx, metav1.ListOptions{})
				return err
			})
			allowed(ctx, t, "get ClusterSummaries", func(ctx context.Context) error {
				_, err := mc.MulticlusterV1alpha1().ClusterSummaries().List(ctx, metav1.ListOptions{})
				return err
			})
			forbidden(ctx, t, "list pods in another namespace", func(ctx context.Context) error {
				_, err := client.CoreV1().Pods(other).List(ctx, metav1.ListOptions{})
				return err
			})
			forbidden(ctx, t, "list secrets in another namespace", func(ctx context.Context) error {
				_, err := client.CoreV1().Secrets(other).List(ctx, metav1.ListOptions{})
				return err
			})
			// In its own namespace too, it reads no secret (followed copies
			// are written blind) and neither creates nor deletes pods: the
			// target's delegator makes the delegates from the chaperons.
			forbidden(ctx, t, "list secrets in its namespace", func(ctx context.Context) error {
				_, err := client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
				return err
			})
			forbidden(ctx, t, "get the token Secret of its own service account", func(ctx context.Context) error {
				_, err := client.CoreV1().Secrets(ns).Get(ctx, tokenName, metav1.GetOptions{})
				return err
			})
			// Nor does it read pods other than its delegates, by name
			// (TestSourceReadsOnlyItsDelegates).
			forbidden(ctx, t, "list pods in its namespace", func(ctx context.Context) error {
				_, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
				return err
			})
			forbidden(ctx, t, "list config maps in its namespace", func(ctx context.Context) error {
				_, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
				return err
			})
			forbidden(ctx, t, "create pods in its namespace", func(ctx context.Context) error {
				_, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: "not-a-delegate"},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}},
				}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				return err
			})
			forbidden(ctx, t, "delete pods in its namespace", func(ctx context.Context) error {
				return client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}, metav1.ListOptions{})
			})
			forbidden(ctx, t, "list nodes", func(ctx context.Context) error {
				_, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
				return err
			})
			forbidden(ctx, t, "edit its own Source", func(ctx context.Context) error {
				_, err := mc.MulticlusterV1alpha1().Sources(ns).List(ctx, metav1.ListOptions{})
				return err
			})
			forbidden(ctx, t, "bind roles in its namespace", func(ctx context.Context) error {
				_, err := client.RbacV1().RoleBindings(ns).List(ctx, metav1.ListOptions{})
				return err
			})
		})
	}

	if err := mc2.MulticlusterV1alpha1().Sources(ns).Delete(ctx, "c1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(ctx, t, "the Source (its finalizer removed)", func(ctx context.Context) error {
		_, err := mc2.MulticlusterV1alpha1().Sources(ns).Get(ctx, "c1", metav1.GetOptions{})
		return err
	})
	waitGone(ctx, t, "the cluster-summary-viewer ClusterRoleBinding", func(ctx context.Context) error {
		_, err := c2.Client.RbacV1().ClusterRoleBindings().Get(ctx, crbName, metav1.GetOptions{})
		return err
	})
	waitGone(ctx, t, "the RoleBinding", func(ctx context.Context) error {
		_, err := c2.Client.RbacV1().RoleBindings(ns).Get(ctx, "admiralty-source-c1", metav1.GetOptions{})
		return err
	})
	waitGone(ctx, t, "the token Secret", func(ctx context.Context) error {
		_, err := c2.Client.CoreV1().Secrets(ns).Get(ctx, tokenName, metav1.GetOptions{})
		return err
	})
	waitGone(ctx, t, "the service account the Source created", func(ctx context.Context) error {
		_, err := c2.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "c1", metav1.GetOptions{})
		return err
	})
}

// A Source whose service account and bindings were made by hand first (the
// seed's manual example) uses them and never deletes them; it deletes only
// the token Secret it made.
func TestSourceKeepsWhatItDidNotCreate(t *testing.T) {
	c2 := sandbox.Clusters[1]
	ctx := testContext(t, 2*time.Minute)
	mc2 := versioned.NewForConfigOrDie(c2.Config)
	ns := namespace(t, c2, "src-manual", nil)
	crbName := "admiralty-source-" + ns + "-c1-cluster-summary-viewer"
	t.Cleanup(func() {
		_ = c2.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), crbName, metav1.DeleteOptions{})
	})
	kubectlApply(t, c2, strings.ReplaceAll(`
apiVersion: v1
kind: ServiceAccount
metadata:
  name: c1
  namespace: $NAMESPACE
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: admiralty-source-c1
  namespace: $NAMESPACE
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: multicluster-scheduler-source
subjects:
  - kind: ServiceAccount
    name: c1
    namespace: $NAMESPACE
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: admiralty-source-$NAMESPACE-c1-cluster-summary-viewer
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: multicluster-scheduler-cluster-summary-viewer
subjects:
  - kind: ServiceAccount
    name: c1
    namespace: $NAMESPACE
---
apiVersion: multicluster.admiralty.io/v1alpha1
kind: Source
metadata:
  name: c1
  namespace: $NAMESPACE
spec:
  serviceAccountName: c1
`, "$NAMESPACE", ns))
	waitSourceCondition(ctx, t, mc2, ns, "c1", metav1.ConditionTrue, source.ReasonAuthorized)
	sa, err := c2.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "c1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sa.Secrets) != 1 || len(sa.OwnerReferences) != 0 {
		t.Fatalf("pre-existing service account: secrets %v, owner references %v; want its token Secret listed and no owner", sa.Secrets, sa.OwnerReferences)
	}
	tokenName := sa.Secrets[0].Name

	if err := mc2.MulticlusterV1alpha1().Sources(ns).Delete(ctx, "c1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(ctx, t, "the token Secret", func(ctx context.Context) error {
		_, err := c2.Client.CoreV1().Secrets(ns).Get(ctx, tokenName, metav1.GetOptions{})
		return err
	})
	waitGone(ctx, t, "the Source", func(ctx context.Context) error {
		_, err := mc2.MulticlusterV1alpha1().Sources(ns).Get(ctx, "c1", metav1.GetOptions{})
		return err
	})
	// kube-controller-manager drops the deleted Secret from .secrets.
	eventually(ctx, t, "the deleted token unlisted from the service account", func(ctx context.Context) (bool, string, error) {
		sa, err := c2.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "c1", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return len(sa.Secrets) == 0, fmt.Sprint(sa.Secrets), nil
	})
	if _, err := c2.Client.RbacV1().RoleBindings(ns).Get(ctx, "admiralty-source-c1", metav1.GetOptions{}); err != nil {
		t.Errorf("the hand-made RoleBinding: %v", err)
	}
	if _, err := c2.Client.RbacV1().ClusterRoleBindings().Get(ctx, crbName, metav1.GetOptions{}); err != nil {
		t.Errorf("the hand-made ClusterRoleBinding: %v", err)
	}
}

// Bad input gives Ready=False with a reason and a Warning Event, never a
// crash; fixing it, or removing what conflicts, makes the Source Ready; a
// changed identity moves the bindings to it.
func TestSourceReportsBadInputAndRecovers(t *testing.T) {
	c2 := sandbox.Clusters[1]
	ctx := testContext(t, 2*time.Minute)
	mc2 := versioned.NewForConfigOrDie(c2.Config)
	ns := namespace(t, c2, "src-bad", nil)
	sources := mc2.MulticlusterV1alpha1().Sources(ns)

	for name, spec := range map[string]v1alpha1.SourceSpec{
		"empty": {},
		"bad":   {ServiceAccountName: "Not_A_Name"},
	} {
		if _, err := sources.Create(ctx, &v1alpha1.Source{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cond := waitSourceCondition(ctx, t, mc2, ns, "empty", metav1.ConditionFalse, source.ReasonInvalidSpec)
	if !strings.Contains(cond.Message, "spec.serviceAccountName") {
		t.Errorf("InvalidSpec message %q does not name the field to set", cond.Message)
	}
	waitEvent(ctx, t, c2, ns, "Source", "empty", source.ReasonInvalidSpec)
	waitSourceCondition(ctx, t, mc2, ns, "bad", metav1.ConditionFalse, source.ReasonInvalidSpec)

	// A user only: bindings, no service account, no token.
	setSourceSpec(ctx, t, mc2, ns, "empty", v1alpha1.SourceSpec{UserName: "alice"})
	waitSourceCondition(ctx, t, mc2, ns, "empty", metav1.ConditionTrue, source.ReasonAuthorized)
	rb, err := c2.Client.RbacV1().RoleBindings(ns).Get(ctx, "admiralty-source-empty", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	alice := rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}
	checkBinding(t, rb.RoleRef, rb.Subjects, "multicluster-scheduler-source", []rbacv1.Subject{alice})

	// Then a service account as well: the bindings follow the spec.
	setSourceSpec(ctx, t, mc2, ns, "empty", v1alpha1.SourceSpec{UserName: "alice", ServiceAccountName: "c9"})
	eventually(ctx, t, "the RoleBinding binds the new service account", func(ctx context.Context) (bool, string, error) {
		rb, err := c2.Client.RbacV1().RoleBindings(ns).Get(ctx, "admiralty-source-empty", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		want := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "c9", Namespace: ns}, alice}
		return cmp.Equal(want, rb.Subjects), fmt.Sprint(rb.Subjects), nil
	})
	waitSourceCondition(ctx, t, mc2, ns, "empty", metav1.ConditionTrue, source.ReasonAuthorized)

	// Someone else's binding under the Source's binding name.
	if _, err := c2.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "admiralty-source-taken"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "bob"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sources.Create(ctx, &v1alpha1.Source{ObjectMeta: metav1.ObjectMeta{Name: "taken"}, Spec: v1alpha1.SourceSpec{UserName: "carol"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSourceCondition(ctx, t, mc2, ns, "taken", metav1.ConditionFalse, source.ReasonBindingConflict)
	waitEvent(ctx, t, c2, ns, "Source", "taken", source.ReasonBindingConflict)
	rb, err = c2.Client.RbacV1().RoleBindings(ns).Get(ctx, "admiralty-source-taken", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rb.RoleRef.Name != "view" || len(rb.Subjects) != 1 || rb.Subjects[0].Name != "bob" {
		t.Errorf("the conflicting binding was changed: %v %v", rb.RoleRef, rb.Subjects)
	}
	if err := c2.Client.RbacV1().RoleBindings(ns).Delete(ctx, "admiralty-source-taken", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSourceCondition(ctx, t, mc2, ns, "taken", metav1.ConditionTrue, source.ReasonAuthorized)
}

// A ClusterSource binds both roles cluster-wide to a service account of any
// namespace; one whose namespace does not exist yet waits for it; deleting
// a ClusterSource deletes what it created through owner references.
func TestSourceClusterSourceGrantsClusterWide(t *testing.T) {
	c2 := sandbox.Clusters[1]
	ctx := testContext(t, 3*time.Minute)
	mc2 := versioned.NewForConfigOrDie(c2.Config)
	ns := namespace(t, c2, "csrc", nil)
	other := namespace(t, c2, "csrc-other", nil)
	name := "cs-" + rand.String(5)
	later := "csrc-later-" + rand.String(5)
	t.Cleanup(func() {
		for _, n := range []string{name, name + "-later"} {
			_ = mc2.MulticlusterV1alpha1().ClusterSources().Delete(context.Background(), n, metav1.DeleteOptions{})
		}
		_ = c2.Client.CoreV1().Namespaces().Delete(context.Background(), later, metav1.DeleteOptions{})
	})
	for n, saNamespace := range map[string]string{name: ns, name + "-later": later} {
		if _, err := mc2.MulticlusterV1alpha1().ClusterSources().Create(ctx, &v1alpha1.ClusterSource{
			ObjectMeta: metav1.ObjectMeta{Name: n},
			Spec:       v1alpha1.ClusterSourceSpec{ServiceAccount: &v1alpha1.ServiceAccountReference{Name: "c1", Namespace: saNamespace}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitSourceCondition(ctx, t, mc2, "", name, metav1.ConditionTrue, source.ReasonAuthorized)
	waitEvent(ctx, t, c2, metav1.NamespaceDefault, "ClusterSource", name, source.ReasonAuthorized)
	cs, err := mc2.MulticlusterV1alpha1().ClusterSources().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	saSubject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "c1", Namespace: ns}}
	crbs := map[string]string{
		"admiralty-cluster-source-" + name:                             "multicluster-scheduler-source",
		"admiralty-cluster-source-" + name + "-cluster-summary-viewer": "multicluster-scheduler-cluster-summary-viewer",
	}
	for crbName, role := range crbs {
		crb, err := c2.Client.RbacV1().ClusterRoleBindings().Get(ctx, crbName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkBinding(t, crb.RoleRef, crb.Subjects, role, saSubject)
		if !ownedBy(crb.OwnerReferences, cs.UID) {
			t.Errorf("ClusterRoleBinding %s is not owned by its ClusterSource: %v", crbName, crb.OwnerReferences)
		}
	}

	out := shell(t, ctx, fmt.Sprintf(`kubectl admiralty export c1 --context cluster2 -n %s --as c2`, ns))
	kubeconfig := secretConfig(t, out)
	client, mc := clientsFromKubeconfig(t, kubeconfig)
	checkUser(ctx, t, client, "system:serviceaccount:"+ns+":c1")
	allowed(ctx, t, "list PodChaperons in any namespace", func(ctx context.Context) error {
		_, err := mc.MulticlusterV1alpha1().PodChaperons(other).List(ctx, metav1.ListOptions{})
		return err
	})
	forbidden(ctx, t, "list pods in any namespace", func(ctx context.Context) error {
		_, err := client.CoreV1().Pods(other).List(ctx, metav1.ListOptions{})
		return err
	})
	allowed(ctx, t, "get ClusterSummaries", func(ctx context.Context) error {
		_, err := mc.MulticlusterV1alpha1().ClusterSummaries().List(ctx, metav1.ListOptions{})
		return err
	})
	forbidden(ctx, t, "list nodes", func(ctx context.Context) error {
		_, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		return err
	})

	waitSourceCondition(ctx, t, mc2, "", name+"-later", metav1.ConditionFalse, source.ReasonNamespaceNotFound)
	if _, err := c2.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: later}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSourceCondition(ctx, t, mc2, "", name+"-later", metav1.ConditionTrue, source.ReasonAuthorized)

	sa, err := c2.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "c1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tokenName := sa.Secrets[0].Name
	if err := mc2.MulticlusterV1alpha1().ClusterSources().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for crbName := range crbs {
		waitGone(ctx, t, "ClusterRoleBinding "+crbName, func(ctx context.Context) error {
			_, err := c2.Client.RbacV1().ClusterRoleBindings().Get(ctx, crbName, metav1.GetOptions{})
			return err
		})
	}
	waitGone(ctx, t, "the token Secret", func(ctx context.Context) error {
		_, err := c2.Client.CoreV1().Secrets(ns).Get(ctx, tokenName, metav1.GetOptions{})
		return err
	})
	waitGone(ctx, t, "the service account", func(ctx context.Context) error {
		_, err := c2.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "c1", metav1.GetOptions{})
		return err
	})
}

// `kubectl admiralty export` fails with a message that says what to do.
func TestSourceExportErrors(t *testing.T) {
	c2 := sandbox.Clusters[1]
	ctx := testContext(t, time.Minute)
	ns := namespace(t, c2, "src-export", nil)
	if _, err := c2.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "plain"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ args, want string }{
		{args: "missing", want: "service account " + ns + "/missing not found in the cluster of context \"cluster2\""},
		{args: "plain", want: "service account " + ns + "/plain has no token Secret: a Source or ClusterSource for it makes one"},
	} {
		out := shell(t, ctx, fmt.Sprintf(`! kubectl admiralty export %s --context cluster2 -n %s 2>&1`, tc.args, ns))
		if !strings.Contains(out, tc.want) {
			t.Errorf("export %s: got %q, want it to contain %q", tc.args, out, tc.want)
		}
	}
}

func waitSourceCondition(ctx context.Context, t *testing.T, mc versioned.Interface, ns, name string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var found metav1.Condition
	what := fmt.Sprintf("Source %s/%s Ready=%s %s", ns, name, status, reason)
	eventually(ctx, t, what, func(ctx context.Context) (bool, string, error) {
		var conds []metav1.Condition
		if ns == "" {
			cs, err := mc.MulticlusterV1alpha1().ClusterSources().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			conds = cs.Status.Conditions
		} else {
			s, err := mc.MulticlusterV1alpha1().Sources(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			conds = s.Status.Conditions
		}
		c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
		if c == nil {
			return false, "no Ready condition", nil
		}
		found = *c
		return c.Status == status && c.Reason == reason, fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message), nil
	})
	return found
}

func setSourceSpec(ctx context.Context, t *testing.T, mc versioned.Interface, ns, name string, spec v1alpha1.SourceSpec) {
	t.Helper()
	s, err := mc.MulticlusterV1alpha1().Sources(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec = spec
	if _, err := mc.MulticlusterV1alpha1().Sources(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func checkBinding(t *testing.T, roleRef rbacv1.RoleRef, subjects []rbacv1.Subject, role string, want []rbacv1.Subject) {
	t.Helper()
	if diff := cmp.Diff(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}, roleRef); diff != "" {
		t.Errorf("roleRef (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, subjects); diff != "" {
		t.Errorf("subjects (-want +got):\n%s", diff)
	}
}

func ownedBy(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.UID == uid {
			return true
		}
	}
	return false
}

// waitGone waits until get returns NotFound.
func waitGone(ctx context.Context, t *testing.T, what string, get func(ctx context.Context) error) {
	t.Helper()
	eventually(ctx, t, what+" deleted", func(ctx context.Context) (bool, string, error) {
		err := get(ctx)
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		return false, fmt.Sprintf("still there (%v)", err), nil
	})
}

// clientsFromKubeconfig makes clients from an exchanged kubeconfig, as a
// source cluster's Target would.
func clientsFromKubeconfig(t *testing.T, kubeconfig []byte) (kubernetes.Interface, versioned.Interface) {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatalf("the exchanged kubeconfig: %v", err)
	}
	if cfg.BearerToken == "" || cfg.CertData != nil || cfg.CertFile != "" {
		t.Fatalf("the exchanged kubeconfig authenticates otherwise than with a token")
	}
	// Every request with a legacy token draws a deprecation warning.
	cfg.WarningHandler = rest.NoWarnings{}
	return kubernetes.NewForConfigOrDie(cfg), versioned.NewForConfigOrDie(cfg)
}

func checkUser(ctx context.Context, t *testing.T, client kubernetes.Interface, want string) {
	t.Helper()
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("who am I: %v", err)
	}
	if got := review.Status.UserInfo.Username; got != want {
		t.Errorf("the kubeconfig authenticates as %q, want %q", got, want)
	}
}

func allowed(ctx context.Context, t *testing.T, what string, do func(ctx context.Context) error) {
	t.Helper()
	if err := do(ctx); err != nil {
		t.Errorf("may %s: %v", what, err)
	}
}

func forbidden(ctx context.Context, t *testing.T, what string, do func(ctx context.Context) error) {
	t.Helper()
	if err := do(ctx); !apierrors.IsForbidden(err) {
		t.Errorf("may not %s: got %v, want Forbidden", what, err)
	}
}

// secretConfig reads the kubeconfig out of a Secret manifest.
func secretConfig(t *testing.T, manifest string) []byte {
	t.Helper()
	var s corev1.Secret
	if err := yaml.Unmarshal([]byte(manifest), &s); err != nil {
		t.Fatalf("export printed no Secret: %v\n%s", err, manifest)
	}
	if s.Kind != "Secret" || s.Name != "c2" || len(s.Data["config"]) == 0 {
		t.Fatalf("export printed %s %q with keys %v; want Secret c2 with a config", s.Kind, s.Name, keysOf(s.Data))
	}
	return s.Data["config"]
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A Source's identity reads its delegates, by name, and nothing else of the
// pods of its namespace: the target's delegator keeps the namespace's
// delegates Role (the names of the pods that PodChaperons control) bound to
// the Source. A chaperon named after someone else's pod gains nothing; the
// Role goes with the last delegate.
func TestSourceReadsOnlyItsDelegates(t *testing.T) {
	c2 := sandbox.Clusters[1]
	ctx := testContext(t, 3*time.Minute)
	mc2 := versioned.NewForConfigOrDie(c2.Config)
	ns := namespace(t, c2, "deleg", nil)
	applySource(t, c2, ns)
	waitSourceCondition(ctx, t, mc2, ns, "c1", metav1.ConditionTrue, source.ReasonAuthorized)
	client, mc := clientsFromKubeconfig(t, secretConfig(t, shell(t, ctx, fmt.Sprintf(`kubectl admiralty export c1 --context cluster2 -n %s --as c2`, ns))))
	chaperons := mc.MulticlusterV1alpha1().PodChaperons(ns)

	// Someone else's pods: a plain one, and one labeled like a delegate.
	for name, labels := range map[string]map[string]string{
		"bystander": nil,
		"lookalike": {v1alpha1.LabelParentClusterName: "cluster1"},
	} {
		if _, err := c2.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "nginx"}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	readable := func(name string) func(ctx context.Context) (bool, string, error) {
		return func(ctx context.Context) (bool, string, error) {
			if _, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
				return false, err.Error(), nil
			}
			if _, err := client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx); err != nil {
				return false, "log: " + err.Error(), nil
			}
			return true, "", nil
		}
	}

	// The source's chaperon (as its scheduler sends it, with the Target's
	// credentials): once its delegate runs, the source reads it and its log.
	if _, err := chaperons.Create(ctx, sourceChaperon(ns, "mine", "10m"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDelegateRunning(ctx, t, c2, ns, "mine", "")
	eventually(ctx, t, "the source reads its delegate and its log", readable("mine"))

	// A chaperon named after the bystander: refused, no delegate.
	if _, err := chaperons.Create(ctx, sourceChaperon(ns, "bystander", "10m"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the chaperon named after someone else's pod refused", func(ctx context.Context) (bool, string, error) {
		ch, err := chaperons.Get(ctx, "bystander", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		c := podCondition(ch.Status.Conditions, corev1.PodScheduled)
		return c != nil && c.Status == corev1.ConditionFalse && strings.Contains(c.Message, "not controlled by this PodChaperon"), fmt.Sprintf("%+v", c), nil
	})
	// A second delegate, readable only once the Role was written after the
	// refused chaperon existed: what follows is not a race with the Role.
	if _, err := chaperons.Create(ctx, sourceChaperon(ns, "mine-2", "10m"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDelegateRunning(ctx, t, c2, ns, "mine-2", "")
	eventually(ctx, t, "the source reads its second delegate and its log", readable("mine-2"))

	for _, name := range []string{"bystander", "lookalike"} {
		if _, err := c2.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Fatalf("the admin reads pod %s: %v", name, err)
		}
		forbidden(ctx, t, "get pod "+name+" (not a delegate)", func(ctx context.Context) error {
			_, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			return err
		})
		forbidden(ctx, t, "read the log of pod "+name+" (not a delegate)", func(ctx context.Context) error {
			_, err := client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
			return err
		})
	}
	forbidden(ctx, t, "list pods in its namespace", func(ctx context.Context) error {
		_, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err
	})
	forbidden(ctx, t, "list its own delegates by label", func(ctx context.Context) error {
		_, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelParentClusterName})
		return err
	})
	forbidden(ctx, t, "watch its delegate", func(ctx context.Context) error {
		w, err := client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=mine"})
		if err == nil {
			w.Stop()
		}
		return err
	})
	forbidden(ctx, t, "delete its delegate", func(ctx context.Context) error {
		return client.CoreV1().Pods(ns).Delete(ctx, "mine", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
	})
	forbidden(ctx, t, "create a pod", func(ctx context.Context) error {
		_, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "mine-3"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}},
		}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	})

	// The Role names exactly the two delegates.
	role, err := c2.Client.RbacV1().Roles(ns).Get(ctx, source.DelegatesRole, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(role.Rules) != 1 || !cmp.Equal(role.Rules[0].ResourceNames, []string{"mine", "mine-2"}) {
		t.Errorf("Role %s/%s rules %+v, want one naming mine and mine-2", ns, role.Name, role.Rules)
	}
	rb, err := c2.Client.RbacV1().RoleBindings(ns).Get(ctx, source.DelegatesRole, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: source.DelegatesRole}, rb.RoleRef); diff != "" {
		t.Errorf("RoleBinding %s/%s roleRef (-want +got):\n%s", ns, rb.Name, diff)
	}
	if diff := cmp.Diff([]rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "c1", Namespace: ns}}, rb.Subjects); diff != "" {
		t.Errorf("RoleBinding %s/%s subjects (-want +got):\n%s", ns, rb.Name, diff)
	}

	// Without delegates, no Role: the last chaperon's deletion takes it.
	for _, name := range []string{"mine", "mine-2", "bystander"} {
		if err := chaperons.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitGone(ctx, t, "the delegates Role", func(ctx context.Context) error {
		_, err := c2.Client.RbacV1().Roles(ns).Get(ctx, source.DelegatesRole, metav1.GetOptions{})
		return err
	})
	waitGone(ctx, t, "the delegates RoleBinding", func(ctx context.Context) error {
		_, err := c2.Client.RbacV1().RoleBindings(ns).Get(ctx, source.DelegatesRole, metav1.GetOptions{})
		return err
	})
	if _, err := c2.Client.CoreV1().Pods(ns).Get(ctx, "bystander", metav1.GetOptions{}); err != nil {
		t.Errorf("the bystander pod after its namesake chaperon went: %v", err)
	}
}
