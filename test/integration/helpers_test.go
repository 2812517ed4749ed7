package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
)

// testContext is bounded, so that a stuck test fails instead of hanging.
func testContext(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// namespace creates a namespace with a unique name in cluster c and deletes
// it when the test ends.
func namespace(t *testing.T, c *Cluster, prefix string, labels map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%s", prefix, rand.String(5))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := c.Client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: create namespace %s: %v", c.Context, name, err)
	}
	t.Cleanup(func() {
		_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	// The ServiceAccount admission plugin rejects pods until the controller
	// manager has created the namespace's default service account.
	eventually(testContext(t, 30*time.Second), t, "default service account in "+name, func(ctx context.Context) (bool, string, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err), nil
	})
	return name
}

// eventually polls cond every 200 ms until it returns true, an error, or ctx
// ends; the last message explains a timeout.
func eventually(ctx context.Context, t *testing.T, what string, cond func(ctx context.Context) (bool, string, error)) {
	t.Helper()
	var last string
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > 5*time.Second {
			t.Logf("%s: took %s", what, d.Round(time.Millisecond))
		}
	}()
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, msg, err := cond(ctx)
		last = msg
		return ok, err
	})
	if err != nil {
		t.Fatalf("%s: %v (last seen: %s)", what, err, last)
	}
}

func podEvents(ctx context.Context, c *Cluster, pod *corev1.Pod) ([]corev1.Event, error) {
	list, err := c.Client.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Pod,involvedObject.name=" + pod.Name,
	})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

func summarizeEvents(events []corev1.Event) string {
	var parts []string
	for _, e := range events {
		parts = append(parts, fmt.Sprintf("%s/%s %s: %s", e.Source.Component, e.ReportingController, e.Reason, e.Message))
	}
	return strings.Join(parts, "; ")
}

func mustParse(q string) resource.Quantity { return resource.MustParse(q) }

// applySource creates Source c1 in namespace ns of cluster c: the identity
// cluster1 uses there, as in the seed's Getting Started.
func applySource(t *testing.T, c *Cluster, ns string) {
	t.Helper()
	kubectlApply(t, c, fmt.Sprintf(`
apiVersion: multicluster.admiralty.io/v1alpha1
kind: Source
metadata:
  name: c1
  namespace: %s
spec:
  serviceAccountName: c1
`, ns))
}

// exchangeWithKubectlAndJq runs the seed's service account exchange,
// verbatim but for waiting on the token: Secret secretName in cluster1
// holds a kubeconfig for Source c1's identity in cluster `context`.
func exchangeWithKubectlAndJq(t *testing.T, ctx context.Context, ns, context, secretName string) {
	t.Helper()
	shell(t, ctx, fmt.Sprintf(`
NAMESPACE=%s
until SECRET_NAME=$(kubectl --context "%s" get serviceaccount c1 --namespace "$NAMESPACE" --output json | jq -er '.secrets[0].name') &&
  TOKEN=$(kubectl --context "%[2]s" get secret $SECRET_NAME --namespace "$NAMESPACE" --output json | jq -er '.data.token' | base64 --decode) &&
  [ -n "$TOKEN" ]; do sleep 0.5; done
CONFIG=$(kubectl --context "%[2]s" config view --minify --raw --output json | jq '.users[0].user={token:"'$TOKEN'"}')
kubectl --context "cluster1" create secret generic %[3]s --namespace "$NAMESPACE" --from-literal=config="$CONFIG"
`, ns, context, secretName))
}

// waitLeftoversGone waits until no pod is left in a terminating namespace
// of any cluster: an earlier test's pods (and delegates) still being
// deleted count in the targets' summaries and would skew placement.
func waitLeftoversGone(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, c := range sandbox.Clusters {
		eventually(ctx, t, c.Context+": earlier tests' pods gone", func(ctx context.Context) (bool, string, error) {
			nss, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, "", err
			}
			for _, ns := range nss.Items {
				if ns.Status.Phase != corev1.NamespaceTerminating {
					continue
				}
				pods, err := c.Client.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{Limit: 1})
				if err != nil {
					return false, "", err
				}
				if len(pods.Items) > 0 {
					return false, "pods left in terminating namespace " + ns.Name, nil
				}
			}
			return true, "", nil
		})
	}
}
