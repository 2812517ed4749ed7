package webhook

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/cert"
)

var testPolicy = certPolicy{
	caLifetime:         100 * time.Hour,
	caRenewBefore:      20 * time.Hour,
	servingLifetime:    10 * time.Hour,
	servingRenewBefore: 3 * time.Hour,
}

// trusts tells whether the API server, with caBundle, accepts the serving
// certificate of data for host at now.
func trusts(t *testing.T, data map[string][]byte, host string, now time.Time) error {
	t.Helper()
	pair, err := tls.X509KeyPair(data[keyCert], data[keyKey])
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return err
	}
	roots, err := cert.NewPoolFromBytes(data[keyCACert])
	if err != nil {
		return err
	}
	opts := x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if net.ParseIP(host) == nil {
		opts.DNSName = host
	}
	if _, err := leaf.Verify(opts); err != nil {
		return err
	}
	return leaf.VerifyHostname(host)
}

func mustRenew(t *testing.T, now time.Time, data map[string][]byte, hosts []string) (map[string][]byte, bool, time.Time) {
	t.Helper()
	out, changed, next, err := renewCerts(now, data, hosts, testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	return out, changed, next
}

func TestRenewCertsLifecycle(t *testing.T) {
	hosts := []string{"127.0.0.1"}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	data, changed, next := mustRenew(t, t0, nil, hosts)
	if !changed {
		t.Fatal("no certificates issued for an empty Secret")
	}
	if err := trusts(t, data, "127.0.0.1", t0); err != nil {
		t.Fatalf("fresh certificates are not trusted: %v", err)
	}
	if want := t0.Add(testPolicy.servingLifetime - testPolicy.servingRenewBefore); !next.Equal(want) {
		t.Errorf("next check at %v, want the serving certificate's renewal at %v", next, want)
	}

	same, changed, _ := mustRenew(t, t0.Add(time.Hour), data, hosts)
	if changed || !bytes.Equal(same[keyCert], data[keyCert]) {
		t.Fatal("certificates that are still good were replaced")
	}

	// The serving certificate is renewed from the same CA: the caBundle
	// that the API server holds does not change.
	t1 := next.Add(time.Minute)
	renewed, changed, _ := mustRenew(t, t1, data, hosts)
	if !changed || bytes.Equal(renewed[keyCert], data[keyCert]) {
		t.Fatal("a serving certificate due for renewal was kept")
	}
	if !bytes.Equal(renewed[keyCACert], data[keyCACert]) || !bytes.Equal(renewed[keyCAKey], data[keyCAKey]) {
		t.Error("renewing the serving certificate changed the CA")
	}
	if err := trusts(t, renewed, "127.0.0.1", t1); err != nil {
		t.Errorf("renewed certificate not trusted: %v", err)
	}

	// Keep renewing until the CA is due: the new CA joins the bundle in
	// front of the old one and the serving certificate in place stays
	// trusted, so the API server's caBundle can catch up at leisure.
	caDue := t0.Add(testPolicy.caLifetime - testPolicy.caRenewBefore)
	now, cur := t1, renewed
	for !now.After(caDue) {
		now = now.Add(time.Hour)
		cur, _, _ = mustRenew(t, now, cur, hosts)
		if err := trusts(t, cur, "127.0.0.1", now); err != nil {
			t.Fatalf("at %v: not trusted: %v", now, err)
		}
	}
	bundle, err := cert.ParseCertsPEM(cur[keyCACert])
	if err != nil {
		t.Fatal(err)
	}
	oldCAs, _ := cert.ParseCertsPEM(data[keyCACert])
	if len(bundle) != 2 || !bundle[1].Equal(oldCAs[0]) || bundle[0].Equal(oldCAs[0]) {
		t.Fatalf("bundle after the CA renewal has %d certificates, want the new CA then the old one", len(bundle))
	}

	// By the time the old CA expires, the serving certificate has been
	// renewed from the new CA, and the old CA leaves the bundle.
	for now.Before(oldCAs[0].NotAfter.Add(time.Hour)) {
		now = now.Add(time.Hour)
		cur, _, _ = mustRenew(t, now, cur, hosts)
		if err := trusts(t, cur, "127.0.0.1", now); err != nil {
			t.Fatalf("at %v: not trusted: %v", now, err)
		}
	}
	bundle, _ = cert.ParseCertsPEM(cur[keyCACert])
	if len(bundle) != 1 {
		t.Errorf("bundle keeps %d certificates after the old CA expired, want 1", len(bundle))
	}
}

func TestRenewCertsReplacesWhatIsUnfit(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	good, _, _ := mustRenew(t, t0, nil, []string{"admiralty-webhook.admiralty.svc"})
	other, _, _ := mustRenew(t, t0, nil, []string{"admiralty-webhook.admiralty.svc"})
	tests := []struct {
		name   string
		data   func() map[string][]byte
		hosts  []string
		wantCA bool // a new CA is issued
	}{
		{name: "Hosts that changed get a new serving certificate from the same CA.",
			data: func() map[string][]byte { return clone(good) }, hosts: []string{"127.0.0.1"}},
		{name: "A serving certificate signed by an unknown CA is replaced.",
			data: func() map[string][]byte {
				d := clone(good)
				d[keyCert], d[keyKey] = other[keyCert], other[keyKey]
				return d
			}},
		{name: "A serving key that does not match its certificate is replaced.",
			data: func() map[string][]byte { d := clone(good); d[keyKey] = other[keyKey]; return d }},
		{name: "A CA key that does not match the CA makes a new CA.",
			data: func() map[string][]byte { d := clone(good); d[keyCAKey] = other[keyCAKey]; return d }, wantCA: true},
		{name: "Garbage makes everything new.",
			data:   func() map[string][]byte { return map[string][]byte{keyCACert: []byte("x"), keyCert: []byte("y")} },
			wantCA: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hosts := tt.hosts
			if hosts == nil {
				hosts = []string{"admiralty-webhook.admiralty.svc"}
			}
			in := tt.data()
			out, changed, _ := mustRenew(t, t0.Add(time.Hour), in, hosts)
			if !changed {
				t.Fatal("kept unfit certificates")
			}
			if err := trusts(t, out, hosts[0], t0.Add(time.Hour)); err != nil {
				t.Fatalf("not trusted: %v", err)
			}
			if gotCA := !bytes.Equal(out[keyCAKey], in[keyCAKey]); gotCA != tt.wantCA {
				t.Errorf("new CA = %v, want %v", gotCA, tt.wantCA)
			}
			if !tt.wantCA && strings.Count(string(out[keyCACert]), "BEGIN CERTIFICATE") != 1 {
				t.Errorf("bundle changed without a new CA:\n%s", out[keyCACert])
			}
		})
	}
}

func clone(m map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range m {
		out[k] = v
	}
	return out
}
