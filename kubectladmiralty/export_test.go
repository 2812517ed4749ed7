package kubectladmiralty

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var sa = &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c1", UID: "sa-uid"}}

func tokenSecret(name, saName, uid, token string, labels map[string]string) corev1.Secret {
	s := corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: labels,
			Annotations: map[string]string{corev1.ServiceAccountNameKey: saName}},
		Type: corev1.SecretTypeServiceAccountToken,
	}
	if uid != "" {
		s.Annotations[corev1.ServiceAccountUIDKey] = uid
	}
	if token != "" {
		s.Data = map[string][]byte{corev1.ServiceAccountTokenKey: []byte(token)}
	}
	return s
}

func TestPickToken(t *testing.T) {
	cases := []struct {
		name    string
		secrets []corev1.Secret
		want    string
		wantErr string
	}{
		{
			name:    "the first token Secret with a token wins",
			secrets: []corev1.Secret{tokenSecret("a", "c1", "sa-uid", "token-a", nil), tokenSecret("b", "c1", "sa-uid", "token-b", nil)},
			want:    "token-a",
		},
		{
			name:    "a Secret without token yet is skipped for one with a token",
			secrets: []corev1.Secret{tokenSecret("a", "c1", "sa-uid", "", nil), tokenSecret("b", "c1", "", "token-b", nil)},
			want:    "token-b",
		},
		{
			name: "Secrets of another service account, an earlier incarnation, or another type are ignored",
			secrets: []corev1.Secret{
				tokenSecret("other", "c2", "", "token-other", nil),
				tokenSecret("old", "c1", "old-uid", "token-old", nil),
				{ObjectMeta: metav1.ObjectMeta{Name: "opaque", Annotations: map[string]string{corev1.ServiceAccountNameKey: "c1"}},
					Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"token": []byte("token-opaque")}},
				tokenSecret("mine", "c1", "sa-uid", "token-mine", nil),
			},
			want: "token-mine",
		},
		{
			name:    "a token not filled in yet says to try again",
			secrets: []corev1.Secret{tokenSecret("a", "c1", "sa-uid", "", nil)},
			wantErr: "service account ns/c1 has no token yet: kube-controller-manager fills in Secret a within seconds, try again",
		},
		{
			name:    "an invalidated token says how to get a new one",
			secrets: []corev1.Secret{tokenSecret("a", "c1", "sa-uid", "token-a", map[string]string{labelTokenInvalidSince: "2026-01-01"})},
			wantErr: "the token of service account ns/c1 (Secret a) was invalidated by kube-controller-manager",
		},
		{
			name:    "no token Secret at all points to the Source",
			wantErr: "service account ns/c1 has no token Secret: a Source or ClusterSource for it makes one",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pickToken(sa, tc.secrets)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("pickToken() error = %v, want one starting with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("token (-want +got):\n%s", diff)
			}
		})
	}
}

// testCA reads the PEM certificate in testdata/ca.crt: exported kubeconfigs
// must carry a CA that parses, as sources refuse any other.
func testCA(t *testing.T) []byte {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join("testdata", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestKubeconfigFor(t *testing.T) {
	ca := testCA(t)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "not-pem.crt")
	if err := os.WriteFile(notPEM, []byte("CA FROM FILE"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		cluster  clientcmdapi.Cluster
		server   string
		insecure bool
		want     clientcmdapi.Cluster
		wantErr  string
	}{
		{
			name:    "the server and CA of the context's cluster are kept",
			cluster: clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthorityData: ca, TLSServerName: "kubernetes"},
			want:    clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthorityData: ca, TLSServerName: "kubernetes"},
		},
		{
			name:    "--server replaces the address and keeps the CA",
			cluster: clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthorityData: ca},
			server:  "https://cluster2.example:6443",
			want:    clientcmdapi.Cluster{Server: "https://cluster2.example:6443", CertificateAuthorityData: ca},
		},
		{
			name:    "a CA file is embedded, so that the kubeconfig works in another cluster",
			cluster: clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthority: caFile},
			want:    clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthorityData: ca},
		},
		{
			name:    "a cluster without a server asks for --server",
			cluster: clientcmdapi.Cluster{CertificateAuthorityData: ca},
			wantErr: `cluster "cluster2" has no server address in the kubeconfig: set --server`,
		},
		{
			name:    "a missing CA file is an error, not a kubeconfig without CA",
			cluster: clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthority: caFile + ".missing"},
			wantErr: `CA certificate of cluster "cluster2"`,
		},
		{
			name:    "a CA that is not a PEM certificate is refused here, not by the source",
			cluster: clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthority: notPEM},
			wantErr: "sources would refuse the exported kubeconfig",
		},
		{
			name:    "insecure-skip-tls-verify says how to fix it",
			cluster: clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", InsecureSkipTLSVerify: true},
			wantErr: `cluster "cluster2" skips TLS verification (insecure-skip-tls-verify)`,
		},
		{
			name:     "insecure-skip-tls-verify passes with --allow-insecure-tls",
			cluster:  clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", InsecureSkipTLSVerify: true},
			insecure: true,
			want:     clientcmdapi.Cluster{Server: "https://127.0.0.1:6443"},
		},
		{
			name:    "a plain-HTTP server is refused",
			cluster: clientcmdapi.Cluster{Server: "http://127.0.0.1:8080", CertificateAuthorityData: ca},
			wantErr: "sources would refuse the exported kubeconfig",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kc, err := kubeconfigFor("ctx2", "cluster2", &tc.cluster, tc.server, sa, []byte("TOKEN"), tc.insecure)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("kubeconfigFor() error = %v, want one starting with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// What a client makes of it: the same cluster and the token.
			cfg, err := clientcmd.NewDefaultClientConfig(*kc, nil).ClientConfig()
			if err != nil {
				t.Fatal(err)
			}
			got := clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData, TLSServerName: cfg.ServerName}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("cluster (-want +got):\n%s", diff)
			}
			if cfg.BearerToken != "TOKEN" || cfg.CertData != nil || cfg.Username != "" {
				t.Errorf("credentials: token %q, client certificate %v, basic user %q; want the token only", cfg.BearerToken, cfg.CertData != nil, cfg.Username)
			}
			if ns, _, _ := clientcmd.NewDefaultClientConfig(*kc, nil).Namespace(); ns != "ns" {
				t.Errorf("namespace of the context = %q, want the service account's, ns", ns)
			}
		})
	}
}

func TestSecretManifest(t *testing.T) {
	cluster := &clientcmdapi.Cluster{Server: "https://127.0.0.1:17002", CertificateAuthorityData: testCA(t)}
	kc, err := kubeconfigFor("cluster2", "admiralty-cluster2", cluster, "", sa, []byte("TOKEN"), false)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, secretName, namespace, golden string
	}{
		{name: "without a namespace, the Secret goes where kubectl -n says", secretName: "c2", golden: "secret.yaml"},
		{name: "with --secret-namespace, the Secret says its namespace", secretName: "c2", namespace: "admiralty", golden: "secret-namespaced.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := secretManifest(tc.secretName, tc.namespace, kc)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("manifest (-want +got):\n%s", diff)
			}
			// And it round-trips: the kubeconfig comes back out of the Secret.
			var s corev1.Secret
			if err := yaml.UnmarshalStrict(got, &s); err != nil {
				t.Fatal(err)
			}
			back, err := clientcmd.Load(s.Data["config"])
			if err != nil {
				t.Fatal(err)
			}
			if back.AuthInfos[back.Contexts[back.CurrentContext].AuthInfo].Token != "TOKEN" {
				t.Errorf("the kubeconfig in the Secret lost its token")
			}
		})
	}
}
