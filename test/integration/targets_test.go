package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/tools/clientcmd"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// Targets are hot-reloaded: bad input is reported on the Target (condition
// and Event) without a restart, fixing it connects the target and brings its
// virtual node, deleting the Target removes the node.
func TestTargetConditionsAndVirtualNode(t *testing.T) {
	c1, c2 := sandbox.Clusters[0], sandbox.Clusters[1]
	ctx := testContext(t, 3*time.Minute)
	ns := namespace(t, c1, "targets", nil)
	// A Target acts in the namespace of its name in the target, which must
	// exist there (else NamespaceNotFound, see TestTargetBadInput).
	createNamespace(t, c2, ns)
	mc := versioned.NewForConfigOrDie(c1.Config)

	target := &v1alpha1.Target{
		ObjectMeta: metav1.ObjectMeta{Name: "c2", Namespace: ns},
		Spec:       v1alpha1.TargetSpec{KubeconfigSecret: &v1alpha1.KubeconfigSecret{Name: "c2"}},
	}
	if _, err := mc.MulticlusterV1alpha1().Targets(ns).Create(ctx, target, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCondition(ctx, t, mc, ns, "c2", metav1.ConditionFalse, "SecretNotFound")
	waitEvent(ctx, t, c1, ns, "Target", "c2", "SecretNotFound")

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "c2", Namespace: ns},
		Data:       map[string][]byte{"config": []byte("this: is: not: a kubeconfig")},
	}
	if _, err := c1.Client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	touch(ctx, t, mc, ns, "c2")
	waitCondition(ctx, t, mc, ns, "c2", metav1.ConditionFalse, "InvalidKubeconfig")

	// A well-formed kubeconfig whose token the target rejects.
	admin, err := os.ReadFile(c2.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range cfg.AuthInfos {
		u.ClientCertificate, u.ClientKey = "", ""
		u.ClientCertificateData, u.ClientKeyData, u.Token = nil, nil, "not-a-token"
	}
	bad, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	setSecret(ctx, t, c1, ns, bad)
	touch(ctx, t, mc, ns, "c2")
	cond := waitCondition(ctx, t, mc, ns, "c2", metav1.ConditionFalse, "Unreachable")
	if !strings.Contains(cond.Message, "unauthorized") {
		t.Errorf("Ready message = %q, want it to say the credentials are rejected", cond.Message)
	}

	// Fixed: connected, and its virtual node comes up with cluster2's region.
	setSecret(ctx, t, c1, ns, admin)
	touch(ctx, t, mc, ns, "c2")
	waitCondition(ctx, t, mc, ns, "c2", metav1.ConditionTrue, "Connected")
	node := "admiralty-namespace-" + ns + "-c2"
	waitNodeReady(ctx, t, c1, node)
	n, err := c1.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"virtual-kubelet.io/provider":   "admiralty",
		"type":                          "virtual-kubelet",
		v1alpha1.LabelTargetName:        "c2",
		"topology.kubernetes.io/region": c2.Region,
	} {
		if got := n.Labels[k]; got != want {
			t.Errorf("virtual node label %s = %q, want %q", k, got, want)
		}
	}
	// The node lifecycle controller may add and remove its not-ready taint
	// around registration; ours must be there.
	hasOurs := false
	for _, taint := range n.Spec.Taints {
		if taint.Key == "virtual-kubelet.io/provider" && taint.Value == "admiralty" && taint.Effect == corev1.TaintEffectNoSchedule {
			hasOurs = true
		}
	}
	if !hasOurs {
		t.Errorf("virtual node taints = %v, want virtual-kubelet.io/provider=admiralty:NoSchedule among them", n.Spec.Taints)
	}
	eventually(ctx, t, "virtual node capacity is the sum of cluster2's Ready nodes", func(ctx context.Context) (bool, string, error) {
		n, err := c1.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		cpu := n.Status.Allocatable[corev1.ResourceCPU]
		return cpu.String() == "12", fmt.Sprintf("allocatable cpu %s", cpu.String()), nil
	})

	if err := mc.MulticlusterV1alpha1().Targets(ns).Delete(ctx, "c2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the virtual node goes with its Target", func(ctx context.Context) (bool, string, error) {
		_, err := c1.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err), nil
	})
}

// A cluster-scoped target names its node admiralty-cluster-NAME.
func TestClusterTargetVirtualNode(t *testing.T) {
	c1, c3 := sandbox.Clusters[0], sandbox.Clusters[2]
	ctx := testContext(t, 2*time.Minute)
	mc := versioned.NewForConfigOrDie(c1.Config)
	name := "ct-" + rand.String(5)
	admin, err := os.ReadFile(c3.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "admiralty"}, Data: map[string][]byte{"config": admin}}
	if _, err := c1.Client.CoreV1().Secrets("admiralty").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c1.Client.CoreV1().Secrets("admiralty").Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = mc.MulticlusterV1alpha1().ClusterTargets().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	ct := &v1alpha1.ClusterTarget{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.ClusterTargetSpec{KubeconfigSecret: &v1alpha1.NamespacedKubeconfigSecret{Name: name, Namespace: "admiralty"}},
	}
	if _, err := mc.MulticlusterV1alpha1().ClusterTargets().Create(ctx, ct, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitNodeReady(ctx, t, c1, "admiralty-cluster-"+name)
	if err := mc.MulticlusterV1alpha1().ClusterTargets().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the virtual node goes with its ClusterTarget", func(ctx context.Context) (bool, string, error) {
		_, err := c1.Client.CoreV1().Nodes().Get(ctx, "admiralty-cluster-"+name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err), nil
	})
}

func setSecret(ctx context.Context, t *testing.T, c *Cluster, ns string, kubeconfig []byte) {
	t.Helper()
	s, err := c.Client.CoreV1().Secrets(ns).Get(ctx, "c2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{"config": kubeconfig}
	if _, err := c.Client.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// touch changes the Target so that it is reconciled at once, rather than at
// the next health check.
func touch(ctx context.Context, t *testing.T, mc versioned.Interface, ns, name string) {
	t.Helper()
	tg, err := mc.MulticlusterV1alpha1().Targets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tg.Annotations == nil {
		tg.Annotations = map[string]string{}
	}
	tg.Annotations["test/touched"] = time.Now().Format(time.RFC3339Nano)
	if _, err := mc.MulticlusterV1alpha1().Targets(ns).Update(ctx, tg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitCondition(ctx context.Context, t *testing.T, mc versioned.Interface, ns, name string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var found metav1.Condition
	eventually(ctx, t, fmt.Sprintf("Target %s Ready=%s %s", name, status, reason), func(ctx context.Context) (bool, string, error) {
		tg, err := mc.MulticlusterV1alpha1().Targets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		for _, c := range tg.Status.Conditions {
			if c.Type == v1alpha1.ConditionReady {
				found = c
				return c.Status == status && c.Reason == reason, c.Reason + ": " + c.Message, nil
			}
		}
		return false, "no Ready condition", nil
	})
	return found
}

func waitEvent(ctx context.Context, t *testing.T, c *Cluster, ns, kind, name, reason string) {
	t.Helper()
	eventually(ctx, t, fmt.Sprintf("Event %s on %s %s", reason, kind, name), func(ctx context.Context) (bool, string, error) {
		list, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name,
		})
		if err != nil {
			return false, "", err
		}
		for _, e := range list.Items {
			if e.Reason == reason {
				return true, "", nil
			}
		}
		return false, summarizeEvents(list.Items), nil
	})
}

// Deleting a namespace deletes its Targets and their kubeconfig Secrets
// together, in any order. A Target whose Secret went first still cleans up
// in its target, with the credentials that last worked: its chaperons
// (and so its delegates) are removed there, not left behind.
func TestTargetCleanupAfterItsSecretIsGone(t *testing.T) {
	c1, c2 := sandbox.Clusters[0], sandbox.Clusters[1]
	ctx := testContext(t, 4*time.Minute)
	ns := namespace(t, c1, "target-cleanup", map[string]string{v1alpha1.LabelNamespaceEnabled: "enabled"})
	createNamespace(t, c2, ns)
	mc1 := versioned.NewForConfigOrDie(c1.Config)
	mc2 := versioned.NewForConfigOrDie(c2.Config)

	admin, err := os.ReadFile(c2.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "c2", Namespace: ns},
		Data:       map[string][]byte{"config": admin},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := mc1.MulticlusterV1alpha1().Targets(ns).Create(ctx, &v1alpha1.Target{
		ObjectMeta: metav1.ObjectMeta{Name: "c2", Namespace: ns},
		Spec:       v1alpha1.TargetSpec{KubeconfigSecret: &v1alpha1.KubeconfigSecret{Name: "c2"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCondition(ctx, t, mc1, ns, "c2", metav1.ConditionTrue, "Connected")
	waitNodeReady(ctx, t, c1, "admiralty-namespace-"+ns+"-c2")
	kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: %s
  annotations:
    multicluster.admiralty.io/elect: ""
spec:
  containers:
  - name: main
    image: nginx
`, ns))
	eventually(ctx, t, "a chaperon of the pod in cluster2", func(ctx context.Context) (bool, string, error) {
		chs, err := mc2.MulticlusterV1alpha1().PodChaperons(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", err
		}
		return len(chs.Items) == 1, fmt.Sprintf("%d chaperons", len(chs.Items)), nil
	})

	// The Secret goes first: the target is disconnected.
	if err := c1.Client.CoreV1().Secrets(ns).Delete(ctx, "c2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	touch(ctx, t, mc1, ns, "c2")
	waitCondition(ctx, t, mc1, ns, "c2", metav1.ConditionFalse, "SecretNotFound")

	// Then the Target: its cleanup reaches cluster2 all the same.
	if err := mc1.MulticlusterV1alpha1().Targets(ns).Delete(ctx, "c2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(ctx, t, c1, ns, "Target", "c2", "CleanedUp")
	eventually(ctx, t, "no chaperon left in cluster2", func(ctx context.Context) (bool, string, error) {
		chs, err := mc2.MulticlusterV1alpha1().PodChaperons(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", err
		}
		return len(chs.Items) == 0, fmt.Sprintf("%d chaperons", len(chs.Items)), nil
	})
	eventually(ctx, t, "the Target gone", func(ctx context.Context) (bool, string, error) {
		_, err := mc1.MulticlusterV1alpha1().Targets(ns).Get(ctx, "c2", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err), nil
	})
}
