package elasticsearch

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
	"github.com/sidelog/sidelog/plugins"
)

// TestCloudID decodes Elastic's documented Cloud ID (the Beats and
// Logstash docs' "staging:dXMtZWFzdC0x...") and the variants with a port.
func TestCloudID(t *testing.T) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct{ id, want string }{
		// Elastic's documentation example: us-east-1.aws.found.io$cec6...$c6c2...
		{"staging:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw==",
			"https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io:443"},
		// Without the label, and without base64 padding.
		{"dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw",
			"https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io:443"},
		// A port in the host part; in the es id part (which wins); no Kibana part.
		{"x:" + enc("eu-west-1.aws.found.io:9243$abc123$def456"), "https://abc123.eu-west-1.aws.found.io:9243"},
		{"x:" + enc("eu-west-1.aws.found.io:9243$abc123:9244$def456"), "https://abc123.eu-west-1.aws.found.io:9244"},
		{"my:deployment:" + enc("host.example$es1"), "https://es1.host.example:443"},
	} {
		got, err := decodeCloudID(tc.id)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.id, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "label:", "x:!!!", "x:" + enc("only-a-host"), "x:" + enc("$abc$def"), "x:" + enc("h:99999$abc"), "x:" + enc("h/p$abc")} {
		if u, err := decodeCloudID(bad); err == nil {
			t.Errorf("%q accepted as %s", bad, u)
		}
	}

	c := NewConfig()
	c.Endpoints = nil
	c.CloudID = "staging:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw=="
	c.APIKey = "a2V5OnNlY3JldA=="
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if e := c.endpoints(); len(e) != 1 || e[0] != "https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io:443" {
		t.Fatalf("endpoints %v", e)
	}
	c.Endpoints = []string{"https://x:9200"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "cloud_id:") {
		t.Fatalf("cloud_id with endpoints: %v", err)
	}
	c.Endpoints = nil
	c.CloudID = "x:notbase64!"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "cloud_id:") {
		t.Fatalf("bad cloud_id: %v", err)
	}
}

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func makeCert(t *testing.T, cn string, ca *testCert) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	parent, signer := tpl, key
	if ca == nil {
		tpl.IsCA, tpl.BasicConstraintsValid = true, true
	} else {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: c, key: key}
}

func fingerprintOf(c *testCert, colons bool) string {
	sum := sha256.Sum256(c.cert.Raw)
	if colons {
		return colonHex(sum[:])
	}
	return hex.EncodeToString(sum[:])
}

func tlsServer(t *testing.T, chain ...*testCert) *estest.Server {
	s := estest.NewUnstarted()
	cert := tls.Certificate{PrivateKey: chain[0].key, Leaf: chain[0].cert}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.cert.Raw)
	}
	s.Server.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// TestCAFingerprint: a server with a self-signed certificate made here is
// reached with its fingerprint pinned (colons or not, the CA of a chain or
// the leaf) and refused with a clear error under a wrong one.
func TestCAFingerprint(t *testing.T) {
	self := makeCert(t, "es-selfsigned", nil)
	ca := makeCert(t, "Elasticsearch security auto-configuration HTTP CA", nil)
	leaf := makeCert(t, "es-node", ca)
	other := makeCert(t, "someone-else", nil)

	write := func(s *estest.Server, fp string) error {
		o := testOutput(t, func(c *Config) {
			c.Endpoints = []string{s.URL}
			c.Index = "app-{{ service }}"
			if fp != "" {
				c.TLS = &TLSConfig{CAFingerprint: fp}
			}
		}, plugins.OutputEnv{Name: "pinned"})
		return o.Write(t.Context(), docs(t, o, 0, 3))
	}
	for _, tc := range []struct {
		name  string
		chain []*testCert
		pin   string
	}{
		{"self-signed, colons", []*testCert{self}, fingerprintOf(self, true)},
		{"self-signed, plain hex", []*testCert{self}, fingerprintOf(self, false)},
		{"CA of the chain", []*testCert{leaf, ca}, fingerprintOf(ca, true)},
		{"leaf of the chain", []*testCert{leaf, ca}, strings.ToLower(fingerprintOf(leaf, true))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tlsServer(t, tc.chain...)
			if err := write(s, tc.pin); err != nil {
				t.Fatal(err)
			}
			if s.Count("app-svc") != 3 {
				t.Fatalf("indexed %d", s.Count("app-svc"))
			}
		})
	}
	t.Run("wrong fingerprint", func(t *testing.T) {
		s := tlsServer(t, self)
		err := write(s, fingerprintOf(other, true))
		if err == nil || !strings.Contains(err.Error(), "tls.ca_fingerprint") || !strings.Contains(err.Error(), fingerprintOf(self, true)) {
			t.Fatalf("want a refusal naming tls.ca_fingerprint and the server's fingerprint, got %v", err)
		}
		if b, ok := delivery.AsBlocked(err); !ok || b.Reason != "tls_error" {
			t.Fatalf("want the output blocked on tls_error, got %v", err)
		}
		if s.Count("app-svc") != 0 || s.BulkRequests() != 0 {
			t.Fatal("data sent to an unpinned server")
		}
	})
	t.Run("no pin: the self-signed certificate is refused", func(t *testing.T) {
		s := tlsServer(t, self)
		err := write(s, "")
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("got %v", err)
		}
		if b, ok := delivery.AsBlocked(err); !ok || b.Reason != "tls_error" {
			t.Fatalf("want the output blocked on tls_error, got %v", err)
		}
	})
	t.Run("bad fingerprint config", func(t *testing.T) {
		c := NewConfig()
		c.TLS = &TLSConfig{CAFingerprint: "AB:CD"}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "tls.ca_fingerprint:") {
			t.Fatalf("got %v", err)
		}
	})
}
