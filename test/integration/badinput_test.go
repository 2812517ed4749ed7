package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// Bad input on Targets that the existing targets test does not cover: a
// kubeconfig with another cluster's CA, a target without the project's
// CRDs, a Target whose namespace does not exist in the target. Each ends
// in a clear Ready condition (and Event), then recovers once fixed.
func TestTargetBadInput(t *testing.T) {
	c1, c2, c3 := sandbox.Clusters[0], sandbox.Clusters[1], sandbox.Clusters[2]
	mc1 := versioned.NewForConfigOrDie(c1.Config)

	t.Run("wrong CA", func(t *testing.T) {
		ctx := testContext(t, 2*time.Minute)
		ns := namespace(t, c1, "badca", nil)
		admin := kubeconfigWith(t, c2, func(cfg *clientcmdCluster) {
			other, err := clientcmd.LoadFromFile(c3.AdminKubeconfig)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range other.Clusters {
				cfg.CertificateAuthorityData = c.CertificateAuthorityData
			}
		})
		createTargetWithKubeconfig(ctx, t, c1, ns, "c2", admin)
		cond := waitCondition(ctx, t, mc1, ns, "c2", metav1.ConditionFalse, "Unreachable")
		if !strings.Contains(cond.Message, "TLS") || !strings.Contains(cond.Message, "x509") {
			t.Errorf("Ready message %q, want it to name the TLS problem", cond.Message)
		}
		waitEvent(ctx, t, c1, ns, "Target", "c2", "Unreachable")
	})

	t.Run("namespace missing in the target", func(t *testing.T) {
		ctx := testContext(t, 2*time.Minute)
		ns := namespace(t, c1, "nsmissing", nil)
		createTargetWithKubeconfig(ctx, t, c1, ns, "c2", readFile(t, c2.AdminKubeconfig))
		cond := waitCondition(ctx, t, mc1, ns, "c2", metav1.ConditionFalse, "NamespaceNotFound")
		if !strings.Contains(cond.Message, ns) {
			t.Errorf("Ready message %q, want it to name namespace %s", cond.Message, ns)
		}
		waitEvent(ctx, t, c1, ns, "Target", "c2", "NamespaceNotFound")
		vnode := "admiralty-namespace-" + ns + "-c2"
		waitNodeNotReady(ctx, t, c1, vnode)
		// Fixed in the target: connected at the next ping.
		createNamespace(t, c2, ns)
		waitCondition(ctx, t, mc1, ns, "c2", metav1.ConditionTrue, "Connected")
		waitNodeReady(ctx, t, c1, vnode)
	})

	t.Run("target without the CRDs", func(t *testing.T) {
		ctx := testContext(t, 3*time.Minute)
		ns := namespace(t, c1, "nocrd", nil)
		createNamespace(t, c3, ns)
		// cluster3 without PodChaperons for a while: deleted, then put back
		// from config/crd whatever happens.
		ext := apiextensionsclient.NewForConfigOrDie(c3.Config)
		crd := podChaperonCRD(t)
		t.Cleanup(func() {
			ctx := testContext(t, time.Minute)
			eventually(ctx, t, "PodChaperon CRD restored in cluster3", func(ctx context.Context) (bool, string, error) {
				_, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd.DeepCopy(), metav1.CreateOptions{})
				if err == nil || apierrors.IsAlreadyExists(err) {
					got, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
					if err != nil {
						return false, "", err
					}
					for _, c := range got.Status.Conditions {
						if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue && got.DeletionTimestamp == nil {
							return true, "", nil
						}
					}
					return false, "not established yet", nil
				}
				return false, err.Error(), nil
			})
		})
		if err := ext.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, crd.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGone(ctx, t, "PodChaperon CRD in cluster3", func(ctx context.Context) error {
			_, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			return err
		})
		createTargetWithKubeconfig(ctx, t, c1, ns, "c3", readFile(t, c3.AdminKubeconfig))
		cond := waitCondition(ctx, t, mc1, ns, "c3", metav1.ConditionFalse, "Unreachable")
		if !strings.Contains(cond.Message, "does not serve multicluster.admiralty.io/v1alpha1") {
			t.Errorf("Ready message %q, want it to say the CRDs are missing", cond.Message)
		}
	})
}

// Names at Kubernetes' limits: a namespace of 63 characters, a Target name
// of 100 (its virtual node's name and labels must still be valid), and two
// pods whose 253-character names differ only at the end: their chaperons
// and delegates are cut with a hash and never collide.
func TestLongNames(t *testing.T) {
	c1, c2 := sandbox.Clusters[0], sandbox.Clusters[1]
	ctx := testContext(t, 3*time.Minute)
	ns := "long-" + rand.String(5) + "-" + strings.Repeat("n", 63-11)
	for _, c := range []*Cluster{c1, c2} {
		createNamespace(t, c, ns)
	}
	labelNamespace(t, c1, ns)
	target := "t" + strings.Repeat("x", 99)
	createTargetWithKubeconfig(ctx, t, c1, ns, target, readFile(t, c2.AdminKubeconfig))
	mc1 := versioned.NewForConfigOrDie(c1.Config)
	waitTargetReady(ctx, t, mc1, ns, target)
	tg, err := mc1.MulticlusterV1alpha1().Targets(ns).Get(ctx, target, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitNodeReady(ctx, t, c1, tg.Status.VirtualNodeName)

	prefix := strings.Repeat("p", 250)
	for _, suffix := range []string{"-a", "-b"} {
		if _, err := c1.Client.CoreV1().Pods(ns).Create(ctx, electedPod(ns, prefix+suffix), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitProxies(ctx, t, c1, ns, 2, func(p *corev1.Pod) bool {
		return p.Spec.NodeName == tg.Status.VirtualNodeName && p.Status.Phase == corev1.PodRunning
	}, "both long-named proxies Running")
	checkOneDelegateEach(ctx, t, ns, c1, c2)
}

// A proxy whose saved original was tampered with (written by hand, not by
// the webhook) is not scheduled, with an Event that says why; so is an
// elected pod pinned to a cluster name that is no target's.
func TestMalformedProxyAnnotations(t *testing.T) {
	c1 := sandbox.Clusters[0]
	ctx := testContext(t, 2*time.Minute)
	// Not enabled: the webhook leaves these pods as they are written.
	ns := namespace(t, c1, "tamper", nil)
	for name, manifest := range map[string]string{
		"not-json":        `{"apiVersion":"v1","kind":"Pod","spec":`,
		"other-namespace": `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"other-namespace","namespace":"kube-system"},"spec":{"containers":[{"name":"a","image":"a"}]}}`,
		"bound":           fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bound","namespace":%q},"spec":{"nodeName":"x","containers":[{"name":"a","image":"a"}]}}`, ns),
	} {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: ns,
				Labels:      map[string]string{v1alpha1.LabelIsProxy: "true"},
				Annotations: map[string]string{v1alpha1.AnnotationSourcePodManifest: manifest},
			},
			Spec: corev1.PodSpec{
				SchedulerName: v1alpha1.ProxySchedulerName,
				Containers:    []corev1.Container{{Name: "a", Image: "a"}},
			},
		}
		if _, err := c1.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"not-json", "other-namespace", "bound"} {
		waitPodEvent(ctx, t, c1, ns, name, "FailedScheduling", "invalid "+v1alpha1.AnnotationSourcePodManifest)
	}

	enabled := namespace(t, c1, "pinned", map[string]string{v1alpha1.LabelNamespaceEnabled: "enabled"})
	p := electedPod(enabled, "pinned")
	p.Annotations[v1alpha1.AnnotationClusterName] = "Not a cluster name!"
	if _, err := c1.Client.CoreV1().Pods(enabled).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodEvent(ctx, t, c1, enabled, "pinned", "FailedScheduling", "")
	got, err := c1.Client.CoreV1().Pods(enabled).Get(ctx, "pinned", metav1.GetOptions{})
	if err != nil || got.Spec.NodeName != "" {
		t.Errorf("pod pinned to no target: %v, node %q; want it Pending", err, got.Spec.NodeName)
	}
}

type clientcmdCluster = struct {
	CertificateAuthorityData []byte
}

// kubeconfigWith returns c's admin kubeconfig with its clusters' CA data
// changed by edit.
func kubeconfigWith(t *testing.T, c *Cluster, edit func(*clientcmdCluster)) []byte {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(c.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		e := clientcmdCluster{CertificateAuthorityData: cl.CertificateAuthorityData}
		edit(&e)
		cl.CertificateAuthorityData, cl.CertificateAuthority = e.CertificateAuthorityData, ""
	}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// createTargetWithKubeconfig creates Secret and Target name in ns of c1.
func createTargetWithKubeconfig(ctx context.Context, t *testing.T, c1 *Cluster, ns, name string, kubeconfig []byte) {
	t.Helper()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string][]byte{"config": kubeconfig}}
	if _, err := c1.Client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	target := &v1alpha1.Target{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       v1alpha1.TargetSpec{KubeconfigSecret: &v1alpha1.KubeconfigSecret{Name: name}},
	}
	mc := versioned.NewForConfigOrDie(c1.Config)
	if _, err := mc.MulticlusterV1alpha1().Targets(ns).Create(ctx, target, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func podChaperonCRD(t *testing.T) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data := readFile(t, filepath.Join(filepath.Dir(file), "..", "..", "config", "crd", "multicluster.admiralty.io_podchaperons.yaml"))
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(data, crd); err != nil {
		t.Fatal(err)
	}
	return crd
}

func waitNodeNotReady(ctx context.Context, t *testing.T, c *Cluster, name string) {
	t.Helper()
	eventually(ctx, t, "node "+name+" absent or not Ready", func(ctx context.Context) (bool, string, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			// virtual-kubelet registers a node only once its target answered.
			return true, "", nil
		}
		if err != nil {
			return false, err.Error(), nil
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status != corev1.ConditionTrue, string(cond.Status) + " " + cond.Message, nil
			}
		}
		return false, "no Ready condition", nil
	})
}

// waitPodEvent waits for an Event of reason on pod ns/name whose message
// contains substring.
func waitPodEvent(ctx context.Context, t *testing.T, c *Cluster, ns, name, reason, substring string) {
	t.Helper()
	eventually(ctx, t, fmt.Sprintf("Event %s %q on pod %s", reason, substring, name), func(ctx context.Context) (bool, string, error) {
		events, err := podEvents(ctx, c, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
		if err != nil {
			return false, "", err
		}
		for _, e := range events {
			if e.Reason == reason && strings.Contains(e.Message, substring) {
				return true, "", nil
			}
		}
		return false, summarizeEvents(events), nil
	})
}
