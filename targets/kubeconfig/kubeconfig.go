// Package kubeconfig turns the kubeconfig of a Target's Secret into a client
// configuration. The Secret is written by whoever may create Secrets in the
// Target's namespace, so its kubeconfig is data, never code or file access:
// a server URL, CA data, a TLS server name, a bearer token, client
// certificate and key data. Exec and auth-provider plugins, file paths,
// impersonation and basic auth are refused, as are insecure-skip-tls-verify
// and proxy-url unless the cluster admin's Policy allows them, and servers
// outside the Policy's allow-list. Every refusal names the field.
package kubeconfig

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
)

// Policy is what a kubeconfig may contain beyond the data-only rules, and
// where its server may be. The zero Policy is the strictest.
type Policy struct {
	// AllowInsecureTLS accepts insecure-skip-tls-verify and http:// servers.
	AllowInsecureTLS bool `json:"allowInsecureTLS,omitempty"`
	// AllowProxyURL accepts proxy-url (http, https or socks5).
	AllowProxyURL bool `json:"allowProxyURL,omitempty"`
	// Servers, when not empty, is the allow-list of servers: IP addresses
	// or CIDRs, which the server's address must fall in when connecting
	// (after name resolution, so a name cannot be rebound elsewhere), and
	// host names, exact or "*.example.com" for any name below that
	// domain. With a proxy-url, the proxy's address is what is checked.
	Servers []string `json:"servers,omitempty"`
}

// Rules are the Policies of the two kinds of target: namespaced Targets,
// which a namespace's tenants write, and ClusterTargets, which cluster
// admins write (their Secret may still live in a namespace that tenants
// write to).
type Rules struct {
	Targets        Policy `json:"targets,omitempty"`
	ClusterTargets Policy `json:"clusterTargets,omitempty"`
}

// For returns the Policy of a ClusterTarget (cluster true) or a Target.
func (r Rules) For(cluster bool) Policy {
	if cluster {
		return r.ClusterTargets
	}
	return r.Targets
}

// Validate checks the allow-lists of both Policies.
func (r Rules) Validate() error {
	if _, err := compile(r.Targets.Servers); err != nil {
		return fmt.Errorf("targets.servers: %w", err)
	}
	if _, err := compile(r.ClusterTargets.Servers); err != nil {
		return fmt.Errorf("clusterTargets.servers: %w", err)
	}
	return nil
}

// FieldError is a refused or invalid field of a kubeconfig.
type FieldError struct {
	// Field is where it is, in kubeconfig terms: users["NAME"].user.exec.
	Field  string
	Detail string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Detail }

// ErrRefused marks the errors of fields that a Policy refuses (as opposed
// to malformed ones): errors.Is(err, ErrRefused).
var ErrRefused = errors.New("refused by policy")

type refusedError struct{ FieldError }

func (e *refusedError) Unwrap() error { return ErrRefused }

func refused(field, detail string) error {
	return &refusedError{FieldError{Field: field, Detail: detail}}
}

func invalid(field, detail string) error {
	return &FieldError{Field: field, Detail: detail}
}

// DialTimeout bounds the TCP connection to a target (the TLS handshake is
// bounded by client-go, 10 s).
const DialTimeout = 10 * time.Second

// Parse checks data, a kubeconfig, against the data-only rules and p, and
// returns the client configuration of its current context. It never reads
// a file, runs a program or contacts the server. The configuration's Dial
// enforces p.Servers and refuses link-local, multicast and unspecified
// addresses (a cloud's metadata endpoint is link-local) at every
// connection.
func Parse(data []byte, p Policy) (*rest.Config, error) {
	servers, err := compile(p.Servers)
	if err != nil {
		return nil, fmt.Errorf("the policy's server allow-list: %w", err)
	}
	kc, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("not a kubeconfig: %w", err)
	}
	ctxName := kc.CurrentContext
	if ctxName == "" {
		return nil, invalid("current-context", "not set")
	}
	kctx, ok := kc.Contexts[ctxName]
	if !ok || kctx == nil {
		return nil, invalid("current-context", fmt.Sprintf("no context named %q", ctxName))
	}
	cluster, ok := kc.Clusters[kctx.Cluster]
	if !ok || cluster == nil {
		return nil, invalid(fmt.Sprintf("contexts[%q].context.cluster", ctxName), fmt.Sprintf("no cluster named %q", kctx.Cluster))
	}
	cfg := &rest.Config{}
	if err := checkCluster(cfg, fmt.Sprintf("clusters[%q].cluster", kctx.Cluster), cluster, p, servers); err != nil {
		return nil, err
	}
	// A context without a user connects anonymously.
	if kctx.AuthInfo != "" {
		user, ok := kc.AuthInfos[kctx.AuthInfo]
		if !ok || user == nil {
			return nil, invalid(fmt.Sprintf("contexts[%q].context.user", ctxName), fmt.Sprintf("no user named %q", kctx.AuthInfo))
		}
		if err := checkUser(cfg, fmt.Sprintf("users[%q].user", kctx.AuthInfo), user); err != nil {
			return nil, err
		}
	}
	cfg.Dial = servers.dial
	return cfg, nil
}

func checkCluster(cfg *rest.Config, field string, c *clientcmdapi.Cluster, p Policy, servers *allowList) error {
	if c.CertificateAuthority != "" {
		return refused(field+".certificate-authority", "a file path; a kubeconfig from a Secret carries its CA as certificate-authority-data")
	}
	if c.Server == "" {
		return invalid(field+".server", "not set")
	}
	u, err := url.Parse(c.Server)
	if err != nil {
		return invalid(field+".server", err.Error())
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return invalid(field+".server", fmt.Sprintf("scheme %q; want https://HOST[:PORT][/PATH]", u.Scheme))
	case u.Scheme == "http" && !p.AllowInsecureTLS:
		return refused(field+".server", "http:// sends the credentials in clear; use https (http is allowed only where insecure TLS is)")
	case u.Hostname() == "":
		return invalid(field+".server", "no host")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return invalid(field+".server", "want https://HOST[:PORT][/PATH], without user, query or fragment")
	}
	if err := servers.checkHost(u.Hostname()); err != nil {
		return refused(field+".server", err.Error())
	}
	cfg.Host = c.Server
	if c.InsecureSkipTLSVerify {
		if !p.AllowInsecureTLS {
			return refused(field+".insecure-skip-tls-verify", "not allowed by this cluster's policy: give the target's CA as certificate-authority-data")
		}
		if len(c.CertificateAuthorityData) > 0 {
			return invalid(field+".insecure-skip-tls-verify", "set together with certificate-authority-data; keep one")
		}
		cfg.Insecure = true
	}
	if len(c.CertificateAuthorityData) > 0 {
		if _, err := certutil.ParseCertsPEM(c.CertificateAuthorityData); err != nil {
			return invalid(field+".certificate-authority-data", "not PEM certificates: "+err.Error())
		}
		cfg.CAData = c.CertificateAuthorityData
	}
	cfg.ServerName = c.TLSServerName
	cfg.DisableCompression = c.DisableCompression
	if c.ProxyURL != "" {
		if !p.AllowProxyURL {
			return refused(field+".proxy-url", "not allowed by this cluster's policy")
		}
		proxy, err := url.Parse(c.ProxyURL)
		if err != nil {
			return invalid(field+".proxy-url", err.Error())
		}
		switch proxy.Scheme {
		case "http", "https", "socks5":
		default:
			return invalid(field+".proxy-url", fmt.Sprintf("scheme %q; want http, https or socks5", proxy.Scheme))
		}
		if proxy.Hostname() == "" {
			return invalid(field+".proxy-url", "no host")
		}
		if err := servers.checkHost(proxy.Hostname()); err != nil {
			return refused(field+".proxy-url", err.Error())
		}
		cfg.Proxy = func(*http.Request) (*url.URL, error) { return proxy, nil }
	}
	return nil
}

func checkUser(cfg *rest.Config, field string, u *clientcmdapi.AuthInfo) error {
	const dataOnly = "a kubeconfig from a Secret is data: use token or client-certificate-data and client-key-data"
	switch {
	case u.Exec != nil:
		return refused(field+".exec", "credential plugins run programs; "+dataOnly)
	case u.AuthProvider != nil:
		return refused(field+".auth-provider", "auth provider plugins are not supported; "+dataOnly)
	case u.TokenFile != "":
		return refused(field+".tokenFile", "a file path; "+dataOnly)
	case u.ClientCertificate != "":
		return refused(field+".client-certificate", "a file path; "+dataOnly)
	case u.ClientKey != "":
		return refused(field+".client-key", "a file path; "+dataOnly)
	case u.Impersonate != "" || u.ImpersonateUID != "" || len(u.ImpersonateGroups) > 0 || len(u.ImpersonateUserExtra) > 0:
		return refused(field+".as", "impersonation is not supported; give the identity's own credentials")
	case u.Username != "" || u.Password != "":
		return refused(field+".username", "basic authentication is not supported; "+dataOnly)
	}
	if u.Token != "" {
		for _, r := range u.Token {
			if r < 0x21 || r > 0x7e {
				return invalid(field+".token", "contains characters a bearer token cannot have (whitespace or control characters)")
			}
		}
		cfg.BearerToken = u.Token
	}
	hasCert, hasKey := len(u.ClientCertificateData) > 0, len(u.ClientKeyData) > 0
	switch {
	case hasCert && !hasKey:
		return invalid(field+".client-key-data", "not set, but client-certificate-data is")
	case hasKey && !hasCert:
		return invalid(field+".client-certificate-data", "not set, but client-key-data is")
	case hasCert:
		if _, err := tls.X509KeyPair(u.ClientCertificateData, u.ClientKeyData); err != nil {
			return invalid(field+".client-certificate-data", "with client-key-data, not a certificate and its key: "+err.Error())
		}
		cfg.CertData, cfg.KeyData = u.ClientCertificateData, u.ClientKeyData
	}
	return nil
}

// allowList is a compiled Policy.Servers.
type allowList struct {
	prefixes []netip.Prefix
	names    []string // exact, or ".example.com" for "*.example.com"
}

func compile(servers []string) (*allowList, error) {
	l := &allowList{}
	for _, s := range servers {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
			return nil, fmt.Errorf("an empty entry")
		case strings.Contains(s, "/"):
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", s, err)
			}
			l.prefixes = append(l.prefixes, p.Masked())
		default:
			if a, err := netip.ParseAddr(s); err == nil {
				l.prefixes = append(l.prefixes, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			name := strings.ToLower(strings.TrimSuffix(s, "."))
			if rest, ok := strings.CutPrefix(name, "*."); ok {
				name = "." + rest
			}
			if strings.ContainsAny(name, "*/:@ ") {
				return nil, fmt.Errorf("%q: want an IP, a CIDR, a host name or *.DOMAIN", s)
			}
			l.names = append(l.names, name)
		}
	}
	return l, nil
}

func (l *allowList) restricted() bool { return len(l.prefixes) > 0 || len(l.names) > 0 }

func (l *allowList) nameAllowed(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, n := range l.names {
		if host == n || (strings.HasPrefix(n, ".") && strings.HasSuffix(host, n)) {
			return true
		}
	}
	return false
}

// checkHost is the check that can be made before connecting: an IP host
// must be allowed; a name must be allowed, or be resolved into an allowed
// network at connection (checkIP).
func (l *allowList) checkHost(host string) error {
	if a, err := netip.ParseAddr(host); err == nil {
		return l.checkIP(a, false)
	}
	if l.restricted() && len(l.prefixes) == 0 && !l.nameAllowed(host) {
		return fmt.Errorf("host %q is not in this cluster's allow-list of target servers", host)
	}
	return nil
}

// checkIP is the check of each address connected to. byName: the host name
// was allowed as such.
func (l *allowList) checkIP(a netip.Addr, byName bool) error {
	a = a.Unmap()
	switch {
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), a.IsMulticast(), a.IsUnspecified(), a.IsInterfaceLocalMulticast(), metadata(a):
		for _, p := range l.prefixes {
			// Only an explicit, narrower entry lets these through.
			if p.Bits() > 0 && p.Contains(a) {
				return nil
			}
		}
		return fmt.Errorf("address %s is link-local, multicast, unspecified or a cloud metadata endpoint: never a target unless the allow-list names it", a)
	case !l.restricted() || byName:
		return nil
	}
	for _, p := range l.prefixes {
		if p.Contains(a) {
			return nil
		}
	}
	return fmt.Errorf("address %s is not in this cluster's allow-list of target servers", a)
}

// metadataAddrs are cloud metadata endpoints outside the link-local
// ranges: AWS's IPv6 one and Alibaba Cloud's.
var metadataAddrs = []netip.Addr{netip.MustParseAddr("fd00:ec2::254"), netip.MustParseAddr("100.100.100.200")}

func metadata(a netip.Addr) bool {
	for _, m := range metadataAddrs {
		if a == m {
			return true
		}
	}
	return false
}

// dial connects as client-go would (DialTimeout, TCP keep-alive), checking
// the address actually connected to, after name resolution.
func (l *allowList) dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	byName := l.nameAllowed(host)
	d := &net.Dialer{
		Timeout:   DialTimeout,
		KeepAlive: 30 * time.Second,
		Control: func(_, addr string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return err
			}
			return l.checkIP(ap.Addr(), byName)
		},
	}
	return d.DialContext(ctx, network, address)
}
