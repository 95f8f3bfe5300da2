package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CA is a test certificate authority: a self-signed ECDSA P-256 root, valid
// from an hour ago for ten years.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte // "CERTIFICATE"
	KeyPEM  []byte // "PRIVATE KEY" (PKCS #8)
}

// LeafOptions describes a certificate for CA.Issue. The zero value gives a
// server certificate for "localhost" and 127.0.0.1, valid from an hour ago to
// a day from now.
type LeafOptions struct {
	CommonName string   // default "localhost" for a server certificate, else "client"
	DNSNames   []string // DNS SANs
	IPs        []string // IP SANs, such as "127.0.0.1" or "::1"
	URIs       []string // URI SANs, such as "spiffe://example.org/ns/prod/sa/app"
	// Client and Server choose the extended key usages. When both are false
	// the certificate is a server certificate. A server certificate with no
	// DNSNames and no IPs gets "localhost" and 127.0.0.1.
	Client bool
	Server bool
	// NotBefore defaults to an hour ago, or to an hour before NotAfter when
	// NotAfter is earlier than that (for expired certificates).
	NotBefore time.Time
	// NotAfter defaults to a day from now.
	NotAfter time.Time
}

// Leaf is a certificate issued by a CA, with its key.
type Leaf struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte // "CERTIFICATE"
	KeyPEM  []byte // "PRIVATE KEY" (PKCS #8)
}

// NewCA creates a CA whose subject common name is name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"outrigger testenv"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testenv: create CA certificate: %v", err)
	}
	cert, keyPEM := parsed(t, der, key)
	return &CA{Cert: cert, Key: key, CertPEM: certPEM(der), KeyPEM: keyPEM}
}

// Issue signs a new leaf certificate described by opts. Bad IPs or URIs fail
// the test.
func (ca *CA) Issue(t testing.TB, opts LeafOptions) *Leaf {
	t.Helper()
	if !opts.Client && !opts.Server {
		opts.Server = true
	}
	if opts.Server && len(opts.DNSNames) == 0 && len(opts.IPs) == 0 {
		opts.DNSNames = []string{"localhost"}
		opts.IPs = []string{"127.0.0.1"}
	}
	if opts.CommonName == "" {
		opts.CommonName = "client"
		if opts.Server {
			opts.CommonName = "localhost"
		}
	}
	now := time.Now()
	if opts.NotAfter.IsZero() {
		opts.NotAfter = now.Add(24 * time.Hour)
	}
	if opts.NotBefore.IsZero() {
		opts.NotBefore = now.Add(-time.Hour)
		if !opts.NotBefore.Before(opts.NotAfter) {
			opts.NotBefore = opts.NotAfter.Add(-time.Hour)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(t),
		Subject:      pkix.Name{CommonName: opts.CommonName},
		NotBefore:    opts.NotBefore,
		NotAfter:     opts.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     opts.DNSNames,
	}
	if opts.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if opts.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, s := range opts.IPs {
		ip := net.ParseIP(s)
		if ip == nil {
			t.Fatalf("testenv: LeafOptions.IPs: %q is not an IP address", s)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	}
	for _, s := range opts.URIs {
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" {
			t.Fatalf("testenv: LeafOptions.URIs: %q is not an absolute URI (%v)", s, err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("testenv: issue certificate for %q: %v", opts.CommonName, err)
	}
	cert, keyPEM := parsed(t, der, key)
	return &Leaf{Cert: cert, Key: key, CertPEM: certPEM(der), KeyPEM: keyPEM}
}

// Pool returns a new pool holding only the CA certificate, for
// tls.Config.RootCAs or ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// TLSCertificate returns the CA certificate and key as a tls.Certificate.
func (ca *CA) TLSCertificate() tls.Certificate { return tlsCert(ca.Cert, ca.Key) }

// WriteFiles writes ca.crt and ca.key (mode 0600) into dir, which must exist,
// and returns their paths. It panics if a file cannot be written.
func (ca *CA) WriteFiles(dir string) (certPath, keyPath string) {
	return writePair(dir, "ca", ca.CertPEM, ca.KeyPEM)
}

// TLSCertificate returns the leaf certificate and key as a tls.Certificate,
// for tls.Config.Certificates.
func (l *Leaf) TLSCertificate() tls.Certificate { return tlsCert(l.Cert, l.Key) }

// WriteFiles writes <name>.crt and <name>.key (mode 0600) into dir, which must
// exist, and returns their paths. <name> is the common name with characters
// other than letters, digits, '-', '_' and '.' replaced by '_'; two leaves
// with the same common name overwrite each other. It panics if a file cannot
// be written.
func (l *Leaf) WriteFiles(dir string) (certPath, keyPath string) {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, l.Cert.Subject.CommonName)
	if name == "" || name == "ca" || strings.Trim(name, ".") == "" {
		name = "leaf"
	}
	return writePair(dir, name, l.CertPEM, l.KeyPEM)
}

// WriteTLSFiles writes ca's certificate and leaf's certificate and key into a
// new t.TempDir() and returns their paths, ready for RedisOptions.TLS.
func WriteTLSFiles(t testing.TB, ca *CA, leaf *Leaf) *TLSFiles {
	t.Helper()
	dir := t.TempDir()
	caCert, _ := writePair(dir, "ca", ca.CertPEM, nil)
	cert, key := leaf.WriteFiles(dir)
	return &TLSFiles{CertFile: cert, KeyFile: key, CAFile: caCert}
}

func writePair(dir, name string, certPEM, keyPEM []byte) (certPath, keyPath string) {
	certPath = filepath.Join(dir, name+".crt")
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		panic(fmt.Sprintf("testenv: write %s: %v", certPath, err))
	}
	if keyPEM == nil {
		return certPath, ""
	}
	keyPath = filepath.Join(dir, name+".key")
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		panic(fmt.Sprintf("testenv: write %s: %v", keyPath, err))
	}
	return certPath, keyPath
}

func tlsCert(cert *x509.Certificate, key *ecdsa.PrivateKey) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: generate key: %v", err)
	}
	return key
}

func newSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("testenv: serial number: %v", err)
	}
	return n.Add(n, big.NewInt(1)) // never zero
}

// parsed returns the parsed certificate and the PKCS #8 PEM of key.
func parsed(t testing.TB, der []byte, key *ecdsa.PrivateKey) (*x509.Certificate, []byte) {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testenv: parse certificate: %v", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testenv: marshal key: %v", err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
