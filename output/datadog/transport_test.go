package datadog

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/datadog/ddtest"
)

// tls.ca_file makes an HTTPS endpoint with a private CA trusted; without
// it the certificate is refused and the output is blocked (tls_error), the
// records kept.
func TestTLSCAFile(t *testing.T) {
	srv := ddtest.NewTLS(testKey)
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, srv.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	o := newOutput(t, srv, func(c *Config) { c.TLS = &TLSConfig{CAFile: ca} })
	if err := o.Write(context.Background(), encode(t, o, jsonEvent(t, `{"a":1}`, time.Now()))); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Entries()); n != 1 {
		t.Fatalf("%d entries", n)
	}
	untrusted := newOutput(t, srv, nil)
	err := untrusted.Write(context.Background(), encode(t, untrusted, jsonEvent(t, `{"a":2}`, time.Now())))
	var be *output.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("want a BatchError, got %v", err)
	}
	if b, ok := delivery.AsBlocked(be.Failed[0]); !ok || b.Reason != ReasonTLSError || !strings.Contains(b.Error(), "certificate") {
		t.Fatalf("want blocked on tls_error, got %v", be.Failed[0])
	}
	skip := newOutput(t, srv, func(c *Config) { c.TLS = &TLSConfig{InsecureSkipVerify: true} })
	if err := skip.Write(context.Background(), encode(t, skip, jsonEvent(t, `{"a":3}`, time.Now()))); err != nil {
		t.Fatal(err)
	}
	// A ca_file that holds no certificate is refused at load, naming the key.
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	c := DefaultConfig()
	c.APIKey, c.TLS = testKey, &TLSConfig{CAFile: bad}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "tls.ca_file") {
		t.Fatalf("Validate: %v", err)
	}
}

// `proxy:` sends every request through that proxy, even to 127.0.0.1 (the
// environment's proxy skips loopback); the credentials it holds are never
// printed.
func TestProxyFromConfig(t *testing.T) {
	intake := ddtest.New(testKey)
	defer intake.Close()
	var mu sync.Mutex
	var seen []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.String()+" auth="+r.Header.Get("Proxy-Authorization"))
		mu.Unlock()
		req, _ := http.NewRequest(r.Method, intake.URL+r.URL.Path, r.Body)
		req.Header = r.Header.Clone()
		req.Header.Del("Proxy-Authorization")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer proxy.Close()
	o := newOutput(t, &ddtest.Server{URL: "http://intake.invalid"}, func(c *Config) {
		c.Proxy = strings.Replace(proxy.URL, "http://", "http://user:secret@", 1)
	})
	if err := o.Write(context.Background(), encode(t, o, jsonEvent(t, `{"via":"proxy"}`, time.Now()))); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || !strings.HasPrefix(seen[0], "http://intake.invalid/api/v2/logs auth=Basic ") {
		t.Fatalf("proxy saw %q", seen)
	}
	if e := intake.Entries(); len(e) != 1 || e[0].Message != `{"via":"proxy"}` {
		t.Fatalf("entries %+v", e)
	}
	c := DefaultConfig()
	c.APIKey, c.Proxy = testKey, "ftp://user:secret@proxy"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "proxy") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Validate: %v", err)
	}
}
