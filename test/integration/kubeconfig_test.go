package integration

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// A Target's kubeconfig Secret is written by a namespace's tenant: it is
// data, never code to run or a file to read. Each hostile kubeconfig below,
// as a namespaced Target and as a ClusterTarget, ends in Ready=False
// InvalidKubeconfig naming the field, with an Event; the scheduler and the
// delegator of the source stay up (same pids), no program runs, and no
// request reaches the tenant's server.
func TestHostileKubeconfigs(t *testing.T) {
	c1, c2 := sandbox.Clusters[0], sandbox.Clusters[1]
	mc1 := versioned.NewForConfigOrDie(c1.Config)
	scheduler, delegator := schedulerComponent(c1), delegatorComponent(c1)
	schedulerPid, delegatorPid := scheduler.pid(), delegator.pid()
	if schedulerPid <= 0 || delegatorPid <= 0 {
		t.Fatalf("scheduler pid %d, delegator pid %d", schedulerPid, delegatorPid)
	}

	dir := t.TempDir()
	marker := filepath.Join(dir, "exec-ran")
	secretFile := filepath.Join(dir, "secret-token")
	if err := os.WriteFile(secretFile, []byte("a-secret-the-tenant-must-not-get"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The tenant's own server: counts what reaches it.
	var requests atomic.Int64
	tenant := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "nothing here", http.StatusNotFound)
	}))
	defer tenant.Close()
	tenantCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tenant.Certificate().Raw})

	cases := []struct {
		name  string
		field string // in the condition's message
		edit  func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo)
	}{
		{
			name: "CA data that is not a PEM certificate", field: "certificate-authority-data",
			edit: func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				c.CertificateAuthorityData = []byte("not a certificate")
			},
		},
		{
			name: "an exec credential plugin", field: "exec",
			edit: func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				u.ClientCertificateData, u.ClientKeyData = nil, nil
				u.Exec = &clientcmdapi.ExecConfig{
					Command: "/bin/sh", Args: []string{"-c", "touch " + marker + `; echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"x"}}'`},
					APIVersion: "client.authentication.k8s.io/v1", InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
				}
			},
		},
		{
			name: "a tokenFile sent to the tenant's server", field: "tokenFile",
			edit: func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				c.Server, c.CertificateAuthorityData = tenant.URL, tenantCA
				u.ClientCertificateData, u.ClientKeyData = nil, nil
				u.TokenFile = secretFile
			},
		},
		{
			name: "an auth-provider", field: "auth-provider",
			edit: func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				u.AuthProvider = &clientcmdapi.AuthProviderConfig{Name: "oidc", Config: map[string]string{"idp-issuer-url": tenant.URL}}
			},
		},
		{
			name: "a client key from a file", field: "client-key",
			edit: func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				u.ClientKeyData, u.ClientKey = nil, secretFile
			},
		},
		{
			name: "a cloud metadata endpoint", field: "169.254.169.254",
			edit: func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				c.Server = "https://169.254.169.254"
			},
		},
	}

	type created struct {
		ref   string // as the registry logs it
		field string
		wait  func(ctx context.Context) metav1.Condition
	}
	var all []created
	ns := namespace(t, c1, "hostile", nil)
	for i, tc := range cases {
		kubeconfig := hostileKubeconfig(t, c2, tc.edit)
		// A namespaced Target.
		name := fmt.Sprintf("t%d", i)
		createTargetWithKubeconfig(testContext(t, time.Minute), t, c1, ns, name, kubeconfig)
		all = append(all, created{ref: ns + "/" + name, field: tc.field, wait: func(ctx context.Context) metav1.Condition {
			cond := waitCondition(ctx, t, mc1, ns, name, metav1.ConditionFalse, "InvalidKubeconfig")
			waitEvent(ctx, t, c1, ns, "Target", name, "InvalidKubeconfig")
			return cond
		}})
		// A ClusterTarget, its Secret in the tenant's namespace.
		ctName := "hostile-" + rand.String(5)
		createClusterTargetWithKubeconfig(testContext(t, time.Minute), t, c1, mc1, ns, ctName, kubeconfig)
		all = append(all, created{ref: ctName, field: tc.field, wait: func(ctx context.Context) metav1.Condition {
			return waitClusterTargetCondition(ctx, t, mc1, ctName, metav1.ConditionFalse, "InvalidKubeconfig")
		}})
	}

	ctx := testContext(t, 3*time.Minute)
	for i, c := range all {
		cond := c.wait(ctx)
		if !strings.Contains(cond.Message, c.field) {
			t.Errorf("%s (%s): Ready message %q, want it to name %q", c.ref, cases[i/2].name, cond.Message, c.field)
		}
	}
	// The scheduler, which writes no status, logs each refusal.
	for _, c := range all {
		eventually(ctx, t, "the scheduler's log names the refusal of "+c.ref, func(ctx context.Context) (bool, string, error) {
			data, err := os.ReadFile(scheduler.logFile)
			if err != nil {
				return false, "", err
			}
			for _, line := range bytes.Split(data, []byte("\n")) {
				if bytes.Contains(line, []byte("Target refused")) && bytes.Contains(line, []byte(`"`+c.ref+`"`)) && bytes.Contains(line, []byte(c.field)) {
					return true, "", nil
				}
			}
			return false, "no such line yet", nil
		})
	}

	if p := scheduler.pid(); p != schedulerPid || !scheduler.alive() {
		t.Errorf("the scheduler's pid went from %d to %d (alive %v)", schedulerPid, p, scheduler.alive())
	}
	if p := delegator.pid(); p != delegatorPid || !delegator.alive() {
		t.Errorf("the delegator's pid went from %d to %d (alive %v)", delegatorPid, p, delegator.alive())
	}
	waitHealthy(ctx, t, c1.Context+" delegator", c1.DelegatorHealth+"/healthz")
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the tenant's exec plugin ran: %s exists", marker)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests reached the tenant's server", n)
	}
}

// hostileKubeconfig is c's admin kubeconfig (data only), edited.
func hostileKubeconfig(t *testing.T, c *Cluster, edit func(*clientcmdapi.Cluster, *clientcmdapi.AuthInfo)) []byte {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(c.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kctx := cfg.Contexts[cfg.CurrentContext]
	edit(cfg.Clusters[kctx.Cluster], cfg.AuthInfos[kctx.AuthInfo])
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// createClusterTargetWithKubeconfig creates Secret name in ns and
// ClusterTarget name naming it; both go when the test ends.
func createClusterTargetWithKubeconfig(ctx context.Context, t *testing.T, c1 *Cluster, mc versioned.Interface, ns, name string, kubeconfig []byte) {
	t.Helper()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string][]byte{"config": kubeconfig}}
	if _, err := c1.Client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := testContext(t, time.Minute)
		_ = mc.MulticlusterV1alpha1().ClusterTargets().Delete(ctx, name, metav1.DeleteOptions{})
		waitGone(ctx, t, "ClusterTarget "+name, func(ctx context.Context) error {
			_, err := mc.MulticlusterV1alpha1().ClusterTargets().Get(ctx, name, metav1.GetOptions{})
			return err
		})
	})
	ct := &v1alpha1.ClusterTarget{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.ClusterTargetSpec{KubeconfigSecret: &v1alpha1.NamespacedKubeconfigSecret{Name: name, Namespace: ns}},
	}
	if _, err := mc.MulticlusterV1alpha1().ClusterTargets().Create(ctx, ct, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitClusterTargetCondition(ctx context.Context, t *testing.T, mc versioned.Interface, name string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var found metav1.Condition
	eventually(ctx, t, fmt.Sprintf("ClusterTarget %s Ready=%s %s", name, status, reason), func(ctx context.Context) (bool, string, error) {
		ct, err := mc.MulticlusterV1alpha1().ClusterTargets().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		c := meta.FindStatusCondition(ct.Status.Conditions, v1alpha1.ConditionReady)
		if c == nil {
			return false, "no Ready condition", nil
		}
		found = *c
		return c.Status == status && c.Reason == reason, c.Reason + ": " + c.Message, nil
	})
	return found
}
