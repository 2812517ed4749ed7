package webhook

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"

	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// Keys of the webhook's Secret (type kubernetes.io/tls). ca.crt is a bundle:
// the current CA first, then older CAs until they expire, so that a serving
// certificate signed by the previous CA stays trusted after a CA rotation.
const (
	keyCACert = "ca.crt"
	keyCAKey  = "ca.key"
	keyCert   = "tls.crt" // corev1.TLSCertKey
	keyKey    = "tls.key" // corev1.TLSPrivateKeyKey
)

// certPolicy is how long certificates live and how long before their end
// they are replaced. The serving certificate is renewed on its own
// schedule, from the current CA; a CA is renewed much earlier than its end
// (caRenewBefore > servingLifetime) so that, by the time it expires, the
// serving certificate has been renewed by its successor: rotating the CA
// never needs a new serving certificate and caBundle at the same instant.
type certPolicy struct {
	caLifetime, caRenewBefore           time.Duration
	servingLifetime, servingRenewBefore time.Duration
}

var defaultCertPolicy = certPolicy{
	caLifetime:         5 * 365 * 24 * time.Hour,
	caRenewBefore:      365 * 24 * time.Hour,
	servingLifetime:    90 * 24 * time.Hour,
	servingRenewBefore: 30 * 24 * time.Hour,
}

// clockSkew backdates certificates, for API servers whose clock is behind.
const clockSkew = time.Hour

// renewCerts returns the Secret data that the webhook needs at now for
// hosts (DNS names or IPs the API server connects to): data itself
// (changed == false) when it is still good, else new data with what had to
// be issued. next is when data must be looked at again.
func renewCerts(now time.Time, data map[string][]byte, hosts []string, p certPolicy) (out map[string][]byte, changed bool, next time.Time, err error) {
	out = map[string][]byte{}
	for k, v := range data {
		out[k] = v
	}
	ca, caKey := currentCA(data)
	if ca == nil || now.After(ca.NotAfter.Add(-p.caRenewBefore)) {
		ca, caKey, err = newCA(now, p.caLifetime)
		if err != nil {
			return nil, false, time.Time{}, err
		}
		keyPEM, err := keyutil.MarshalPrivateKeyToPEM(caKey)
		if err != nil {
			return nil, false, time.Time{}, err
		}
		out[keyCAKey] = keyPEM
		changed = true
	}
	// The bundle: the current CA, then the others that are still valid.
	bundle := []*x509.Certificate{ca}
	old, _ := cert.ParseCertsPEM(data[keyCACert])
	for _, c := range old {
		if c.IsCA && now.Before(c.NotAfter) && !c.Equal(ca) && !slices.ContainsFunc(bundle, c.Equal) {
			bundle = append(bundle, c)
		}
	}
	bundlePEM, err := cert.EncodeCertificates(bundle...)
	if err != nil {
		return nil, false, time.Time{}, err
	}
	if !bytes.Equal(bundlePEM, data[keyCACert]) {
		out[keyCACert] = bundlePEM
		changed = true
	}

	leaf := servingCert(data, bundle, hosts, now)
	if leaf == nil || now.After(leaf.NotAfter.Add(-p.servingRenewBefore)) {
		certPEM, keyPEM, l, err := newServingCert(now, p.servingLifetime, ca, caKey, hosts)
		if err != nil {
			return nil, false, time.Time{}, err
		}
		out[keyCert], out[keyKey], leaf = certPEM, keyPEM, l
		changed = true
	}
	next = ca.NotAfter.Add(-p.caRenewBefore)
	if t := leaf.NotAfter.Add(-p.servingRenewBefore); t.Before(next) {
		next = t
	}
	return out, changed, next, nil
}

// currentCA is the first certificate of the bundle if it is a CA whose
// private key is ca.key.
func currentCA(data map[string][]byte) (*x509.Certificate, crypto.Signer) {
	certs, err := cert.ParseCertsPEM(data[keyCACert])
	if err != nil || len(certs) == 0 || !certs[0].IsCA {
		return nil, nil
	}
	key, err := keyutil.ParsePrivateKeyPEM(data[keyCAKey])
	if err != nil {
		return nil, nil
	}
	signer, ok := key.(crypto.Signer)
	if !ok || !publicKeysEqual(signer.Public(), certs[0].PublicKey) {
		return nil, nil
	}
	return certs[0], signer
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// servingCert is the leaf of tls.crt/tls.key if the pair is valid, the
// leaf is trusted by the bundle at now and names exactly hosts.
func servingCert(data map[string][]byte, bundle []*x509.Certificate, hosts []string, now time.Time) *x509.Certificate {
	pair, err := tls.X509KeyPair(data[keyCert], data[keyKey])
	if err != nil {
		return nil
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil
	}
	roots := x509.NewCertPool()
	for _, c := range bundle {
		roots.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil
	}
	var names []string
	names = append(names, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	want := slices.Clone(hosts)
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		return nil
	}
	return leaf
}

func newCA(now time.Time, lifetime time.Duration) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("admiralty-webhook-ca@%d", now.Unix())},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

func newServingCert(now time.Time, lifetime time.Duration, ca *x509.Certificate, caKey crypto.Signer, hosts []string) (certPEM, keyPEM []byte, leaf *x509.Certificate, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, nil, err
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	leaf, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	keyPEM, err = keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, nil, err
	}
	// The chain is the leaf alone: the API server trusts the CA through
	// caBundle.
	certPEM, err = cert.EncodeCertificates(leaf)
	return certPEM, keyPEM, leaf, err
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}
