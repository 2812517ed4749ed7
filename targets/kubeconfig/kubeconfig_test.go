package kubeconfig

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
)

var (
	pemOnce           sync.Once
	certPEM, keyPEM   []byte
	otherCert, otherK []byte
)

// testPEM returns a self-signed certificate and its key (a CA for the
// cluster, and a client certificate for the user), and a second pair.
func testPEM(t testing.TB) (cert, key, cert2, key2 []byte) {
	t.Helper()
	pemOnce.Do(func() {
		var err error
		if certPEM, keyPEM, err = certutil.GenerateSelfSignedCertKey("target", nil, nil); err != nil {
			panic(err)
		}
		if otherCert, otherK, err = certutil.GenerateSelfSignedCertKey("other", nil, nil); err != nil {
			panic(err)
		}
	})
	return certPEM, keyPEM, otherCert, otherK
}

// kubeconfig is a kubeconfig of one context, c/u, edited by the callers.
func kubeconfig(t testing.TB, edit func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo)) []byte {
	t.Helper()
	ca, _, _, _ := testPEM(t)
	kc := clientcmdapi.NewConfig()
	c := clientcmdapi.NewCluster()
	c.Server = "https://127.0.0.1:6443"
	c.CertificateAuthorityData = ca
	u := clientcmdapi.NewAuthInfo()
	u.Token = "TOKEN"
	if edit != nil {
		edit(c, u)
	}
	kc.Clusters["c"] = c
	kc.AuthInfos["u"] = u
	kctx := clientcmdapi.NewContext()
	kctx.Cluster, kctx.AuthInfo = "c", "u"
	kc.Contexts["ctx"] = kctx
	kc.CurrentContext = "ctx"
	data, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParse(t *testing.T) {
	ca, key, cert2, key2 := testPEM(t)
	cases := []struct {
		name   string
		data   []byte
		policy Policy
		// want: the configuration's data fields; wantErr: the error's start.
		want        rest.Config
		wantErr     string
		wantRefusal bool
	}{
		{
			name: "a server, CA data and a token make a configuration",
			data: kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { c.TLSServerName = "kubernetes" }),
			want: rest.Config{Host: "https://127.0.0.1:6443", BearerToken: "TOKEN", TLSClientConfig: rest.TLSClientConfig{CAData: ca, ServerName: "kubernetes"}},
		},
		{
			name: "client certificate and key data are credentials too",
			data: kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				u.Token, u.ClientCertificateData, u.ClientKeyData = "", ca, key
			}),
			want: rest.Config{Host: "https://127.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{CAData: ca, CertData: ca, KeyData: key}},
		},
		{
			name: "an exec credential plugin is refused: it would run a program",
			data: kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				u.Exec = &clientcmdapi.ExecConfig{Command: "/bin/sh"}
			}),
			wantErr:     `users["u"].user.exec: credential plugins run programs`,
			wantRefusal: true,
		},
		{
			name: "an auth provider is refused",
			data: kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				u.AuthProvider = &clientcmdapi.AuthProviderConfig{Name: "gcp"}
			}),
			wantErr:     `users["u"].user.auth-provider:`,
			wantRefusal: true,
		},
		{
			name:        "a token file is refused: it would send a local file",
			data:        kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { u.TokenFile = "/var/run/secrets/token" }),
			wantErr:     `users["u"].user.tokenFile: a file path`,
			wantRefusal: true,
		},
		{
			name:        "a client certificate file is refused",
			data:        kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { u.ClientCertificate = "/etc/passwd" }),
			wantErr:     `users["u"].user.client-certificate: a file path`,
			wantRefusal: true,
		},
		{
			name:        "a client key file is refused",
			data:        kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { u.ClientKey = "/etc/shadow" }),
			wantErr:     `users["u"].user.client-key: a file path`,
			wantRefusal: true,
		},
		{
			name: "a CA file is refused",
			data: kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				c.CertificateAuthorityData, c.CertificateAuthority = nil, "/etc/ssl/ca.crt"
			}),
			wantErr:     `clusters["c"].cluster.certificate-authority: a file path`,
			wantRefusal: true,
		},
		{
			name:        "impersonation is refused",
			data:        kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { u.Impersonate = "system:admin" }),
			wantErr:     `users["u"].user.as:`,
			wantRefusal: true,
		},
		{
			name: "basic authentication is refused",
			data: kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				u.Username, u.Password = "admin", "secret"
			}),
			wantErr:     `users["u"].user.username:`,
			wantRefusal: true,
		},
		{
			name: "CA data that is not PEM is invalid, not a panic",
			data: kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				c.CertificateAuthorityData = []byte("not a certificate")
			}),
			wantErr: `clusters["c"].cluster.certificate-authority-data: not PEM certificates`,
		},
		{
			name:        "insecure-skip-tls-verify is refused by default",
			data:        insecure(t),
			wantErr:     `clusters["c"].cluster.insecure-skip-tls-verify: not allowed`,
			wantRefusal: true,
		},
		{
			name:   "insecure-skip-tls-verify passes where the policy allows it",
			data:   insecure(t),
			policy: Policy{AllowInsecureTLS: true},
			want:   rest.Config{Host: "https://127.0.0.1:6443", BearerToken: "TOKEN", TLSClientConfig: rest.TLSClientConfig{Insecure: true}},
		},
		{
			name: "insecure-skip-tls-verify with CA data is contradictory",
			data: kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				c.InsecureSkipTLSVerify = true
			}),
			policy:  Policy{AllowInsecureTLS: true},
			wantErr: `clusters["c"].cluster.insecure-skip-tls-verify: set together with certificate-authority-data`,
		},
		{
			name:        "an http server is refused: the token would go in clear",
			data:        kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { c.Server = "http://127.0.0.1:8080" }),
			wantErr:     `clusters["c"].cluster.server: http:// sends the credentials in clear`,
			wantRefusal: true,
		},
		{
			name:    "a server that is not a URL of a host is invalid",
			data:    kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { c.Server = "https://user:pw@host:6443" }),
			wantErr: `clusters["c"].cluster.server: want https://HOST[:PORT][/PATH]`,
		},
		{
			name:    "a server of another scheme is invalid",
			data:    kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { c.Server = "file:///etc/passwd" }),
			wantErr: `clusters["c"].cluster.server: scheme "file"`,
		},
		{
			name:        "a proxy URL is refused by default",
			data:        kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { c.ProxyURL = "http://proxy:3128" }),
			wantErr:     `clusters["c"].cluster.proxy-url: not allowed`,
			wantRefusal: true,
		},
		{
			name:    "a proxy URL of another scheme is invalid where proxies are allowed",
			data:    kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { c.ProxyURL = "ftp://proxy:21" }),
			policy:  Policy{AllowProxyURL: true},
			wantErr: `clusters["c"].cluster.proxy-url: scheme "ftp"`,
		},
		{
			name:    "a token with a line break is invalid (no header injection)",
			data:    kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { u.Token = "TOKEN\r\nX-Evil: 1" }),
			wantErr: `users["u"].user.token: contains characters`,
		},
		{
			name: "a client certificate without its key is invalid",
			data: kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				u.ClientCertificateData = ca
			}),
			wantErr: `users["u"].user.client-key-data: not set`,
		},
		{
			name: "a client certificate with another's key is invalid",
			data: kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				u.ClientCertificateData, u.ClientKeyData = cert2, key
			}),
			wantErr: `users["u"].user.client-certificate-data: with client-key-data, not a certificate and its key`,
		},
		{
			name:    "a server in a link-local network (cloud metadata) is refused without an allow-list",
			data:    kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { c.Server = "https://169.254.169.254" }),
			wantErr: `clusters["c"].cluster.server: address 169.254.169.254 is link-local`, wantRefusal: true,
		},
		{
			name:    "an IPv4-mapped metadata address is refused too",
			data:    kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { c.Server = "https://[::ffff:169.254.169.254]" }),
			wantErr: `clusters["c"].cluster.server: address 169.254.169.254 is link-local`, wantRefusal: true,
		},
		{
			name:   "an allow-list entry naming a link-local address lets it through",
			data:   kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { c.Server = "https://169.254.10.1" }),
			policy: Policy{Servers: []string{"169.254.10.0/24"}},
			want:   rest.Config{Host: "https://169.254.10.1", BearerToken: "TOKEN", TLSClientConfig: rest.TLSClientConfig{CAData: ca}},
		},
		{
			name:        "a server address outside the allow-list is refused",
			data:        kubeconfig(t, nil),
			policy:      Policy{Servers: []string{"10.0.0.0/8", "*.example.com"}},
			wantErr:     `clusters["c"].cluster.server: address 127.0.0.1 is not in this cluster's allow-list`,
			wantRefusal: true,
		},
		{
			name:        "a host name outside an allow-list of names is refused",
			data:        kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { c.Server = "https://metadata.google.internal" }),
			policy:      Policy{Servers: []string{"*.example.com"}},
			wantErr:     `clusters["c"].cluster.server: host "metadata.google.internal" is not in this cluster's allow-list`,
			wantRefusal: true,
		},
		{
			name:   "a host name below an allowed domain passes",
			data:   kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { c.Server = "https://api.c2.Example.com:6443" }),
			policy: Policy{Servers: []string{"*.example.com"}},
			want:   rest.Config{Host: "https://api.c2.Example.com:6443", BearerToken: "TOKEN", TLSClientConfig: rest.TLSClientConfig{CAData: ca}},
		},
		{
			name:    "no current context",
			data:    []byte("apiVersion: v1\nkind: Config\nclusters: []\n"),
			wantErr: `current-context: not set`,
		},
		{
			name:    "a current context that does not exist",
			data:    []byte("apiVersion: v1\nkind: Config\ncurrent-context: x\n"),
			wantErr: `current-context: no context named "x"`,
		},
		{
			name:    "a context whose user does not exist",
			data:    []byte("apiVersion: v1\nkind: Config\ncurrent-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://h'}}]\n"),
			wantErr: `contexts["x"].context.user: no user named "u"`,
		},
		{
			name:    "not a kubeconfig at all",
			data:    []byte("\x00\x01{["),
			wantErr: `not a kubeconfig`,
		},
		{
			name: "a user without credentials connects anonymously",
			data: kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { u.Token = "" }),
			want: rest.Config{Host: "https://127.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{CAData: ca}},
		},
	}
	_ = key2
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(tc.data, tc.policy)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("Parse() error = %v, want one starting with %q", err, tc.wantErr)
				}
				if got := errors.Is(err, ErrRefused); got != tc.wantRefusal {
					t.Errorf("errors.Is(err, ErrRefused) = %v, want %v", got, tc.wantRefusal)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if cfg.Dial == nil {
				t.Errorf("the configuration has no Dial: its connections are not checked")
			}
			got := rest.Config{Host: cfg.Host, BearerToken: cfg.BearerToken, TLSClientConfig: cfg.TLSClientConfig}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("configuration (-want +got):\n%s", diff)
			}
			assertDataOnly(t, cfg)
		})
	}
}

func insecure(t *testing.T) []byte {
	return kubeconfig(t, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
		c.InsecureSkipTLSVerify, c.CertificateAuthorityData = true, nil
	})
}

// assertDataOnly fails if cfg could run a program or read a file.
func assertDataOnly(t testing.TB, cfg *rest.Config) {
	t.Helper()
	if cfg.ExecProvider != nil || cfg.AuthProvider != nil || cfg.BearerTokenFile != "" ||
		cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" || cfg.Impersonate.UserName != "" || cfg.Username != "" {
		t.Errorf("configuration may run a program, read a file or act as another: %+v", cfg)
	}
}

func TestRulesValidate(t *testing.T) {
	cases := []struct {
		name    string
		rules   Rules
		wantErr string
	}{
		{name: "IPs, CIDRs, names and wildcards are valid", rules: Rules{Targets: Policy{Servers: []string{"10.0.0.1", "10.0.0.0/8", "fd00::/8", "api.example.com", "*.example.com"}}}},
		{name: "a malformed CIDR is refused", rules: Rules{ClusterTargets: Policy{Servers: []string{"10.0.0.0/33"}}}, wantErr: "clusterTargets.servers: "},
		{name: "a wildcard inside a name is refused", rules: Rules{Targets: Policy{Servers: []string{"api.*.example.com"}}}, wantErr: "targets.servers: "},
		{name: "an empty entry is refused", rules: Rules{Targets: Policy{Servers: []string{""}}}, wantErr: "targets.servers: an empty entry"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rules.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want an error starting with %q", err, tc.wantErr)
			}
		})
	}
}

// The allow-list is enforced at each connection, on the address connected
// to, so a name cannot be resolved (or rebound) into a forbidden network.
func TestDialChecksTheAddressConnectedTo(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	cases := []struct {
		name    string
		servers []string
		host    string
		wantErr string
	}{
		{name: "no allow-list: loopback is allowed", host: "127.0.0.1"},
		{name: "an address in an allowed network connects", servers: []string{"127.0.0.0/8"}, host: "127.0.0.1"},
		{name: "a name resolved into an allowed network connects", servers: []string{"127.0.0.0/8"}, host: "localhost"},
		{name: "a name resolved outside the allowed networks does not", servers: []string{"10.0.0.0/8"}, host: "localhost", wantErr: "is not in this cluster's allow-list"},
		{name: "an allowed name connects wherever it resolves", servers: []string{"localhost"}, host: "localhost"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			list, err := compile(tc.servers)
			if err != nil {
				t.Fatal(err)
			}
			c, err := list.dial(context.Background(), "tcp4", net.JoinHostPort(tc.host, port))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatalf("dial succeeded, want an error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("dial: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// FuzzParse: whatever the Secret holds, Parse neither panics nor returns a
// configuration that could run a program or read a file, and the clients
// built from what it returns are built without panicking.
func FuzzParse(f *testing.F) {
	ca, key, _, _ := testPEM(f)
	seeds := [][]byte{
		kubeconfig(f, nil),
		kubeconfig(f, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
			c.CertificateAuthorityData = []byte("not a certificate")
		}),
		kubeconfig(f, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
			u.Exec = &clientcmdapi.ExecConfig{Command: "/bin/sh", Args: []string{"-c", "touch /tmp/pwned"}, APIVersion: "client.authentication.k8s.io/v1"}
		}),
		kubeconfig(f, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
			c.CertificateAuthorityData, c.InsecureSkipTLSVerify = nil, true
			u.Token, u.TokenFile = "", "/var/run/secrets/kubernetes.io/serviceaccount/token"
		}),
		kubeconfig(f, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
			u.Token, u.ClientCertificateData, u.ClientKeyData = "", ca, key
		}),
		kubeconfig(f, func(c *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { c.ProxyURL = "socks5://127.0.0.1:1080" }),
		[]byte("apiVersion: v1\nkind: Config\ncurrent-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {server: 'https://[::1]:6443'}}]\n"),
		[]byte(`{"apiVersion":"v1","kind":"Config","current-context":"x"}`),
	}
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, permissive bool) {
		p := Policy{}
		if permissive {
			p = Policy{AllowInsecureTLS: true, AllowProxyURL: true}
		}
		cfg, err := Parse(data, p)
		if err != nil {
			return
		}
		assertDataOnly(t, cfg)
		if _, err := kubernetes.NewForConfig(cfg); err != nil {
			// An error is fine; a panic is not.
			return
		}
		if _, err := rest.TransportFor(cfg); err != nil {
			return
		}
	})
}
