package ddtest

// ddtest against the answers the Datadog logs intake documents for
// POST /api/v2/logs (the send-logs API reference): 202 Accepted with {},
// 400 for a malformed payload, 401 for a missing API key, 403 for an invalid
// one, 408/429/500/503 to retry, 413 above 5 MB uncompressed, and an
// 18-hour acceptance window for timestamps.

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, url, key, body string, keySet bool) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/api/v2/logs", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if keySet {
		req.Header.Set("DD-API-KEY", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestDocumentedAnswers(t *testing.T) {
	s := New("key")
	defer s.Close()
	ok := `[{"message":"a"},{"message":"b"}]`
	if st, _, b := post(t, s.URL, "key", ok, true); st != 202 || b != "{}" {
		t.Errorf("valid payload: %d %s, want 202 {}", st, b)
	}
	if st, _, _ := post(t, s.URL, "", ok, false); st != 401 {
		t.Errorf("missing DD-API-KEY: %d, want 401", st)
	}
	if st, _, _ := post(t, s.URL, "wrong", ok, true); st != 403 {
		t.Errorf("invalid DD-API-KEY: %d, want 403", st)
	}
	if st, _, _ := post(t, s.URL, "key", `{"message":"not an array"`, true); st != 400 {
		t.Errorf("malformed payload: %d, want 400", st)
	}
	big := `[{"message":"` + strings.Repeat("x", 900_000) + `"}` + strings.Repeat(`,{"message":"`+strings.Repeat("x", 900_000)+`"}`, 5) + "]"
	if st, _, _ := post(t, s.URL, "key", big, true); st != 413 {
		t.Errorf("%d bytes: %d, want 413", len(big), st)
	}
	for _, f := range []Fault{{Status: 408}, {Status: 429, RetryAfter: "7"}, {Status: 500}, {Status: 503, RetryAfter: "2"}} {
		s.Inject(f)
		st, h, _ := post(t, s.URL, "key", ok, true)
		if st != f.Status || h.Get("Retry-After") != f.RetryAfter {
			t.Errorf("injected %d: answered %d, Retry-After %q", f.Status, st, h.Get("Retry-After"))
		}
	}
	// Only the accepted request stored its entries.
	if n := len(s.Entries()); n != 2 {
		t.Errorf("%d entries stored, want 2 (the one 202 answer)", n)
	}
	// The malformed and the oversized request are also flagged as what a
	// client must never send.
	if v := s.Violations(); len(v) != 2 || !strings.Contains(v[0], "not a JSON array") || !strings.Contains(v[1], "bytes uncompressed") {
		t.Errorf("violations %q, want the malformed and the oversized request", v)
	}
}

func TestAcceptanceWindow(t *testing.T) {
	s := New("key")
	defer s.Close()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return now }
	fresh := now.Add(-AcceptanceWindow + time.Minute).UnixMilli()
	old := now.Add(-AcceptanceWindow - time.Minute).UnixMilli()
	body := `[{"message":"fresh","timestamp":` + strconv.FormatInt(fresh, 10) + `},{"message":"old","timestamp":` + strconv.FormatInt(old, 10) + `},{"message":"no timestamp"}]`
	if st, _, _ := post(t, s.URL, "key", body, true); st != 202 {
		t.Fatalf("status %d, want 202: the intake accepts the request", st)
	}
	stale := s.Stale()
	if len(stale) != 1 || stale[0].Message != "old" {
		t.Fatalf("stale entries %+v, want only the one older than 18 h", stale)
	}
}

// A gateway's 502 or 504 may come after the intake took the request
// (Store): the entries are there although the client saw an error. Delay
// holds the answer until the client gives up.
func TestGatewayAnswerAfterAccept(t *testing.T) {
	s := New("key")
	defer s.Close()
	s.Inject(Fault{Status: 502, Store: true}, Fault{Status: 504, Store: true})
	for _, want := range []int{502, 504} {
		if st, _, _ := post(t, s.URL, "key", `[{"message":"a"}]`, true); st != want {
			t.Fatalf("status %d, want %d", st, want)
		}
	}
	if n := len(s.Entries()); n != 2 {
		t.Fatalf("%d entries stored, want 2: the intake took both requests", n)
	}
	s.Inject(Fault{Delay: time.Minute, Store: true})
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/v2/logs", strings.NewReader(`[{"message":"late"}]`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("DD-API-KEY", "key")
	c := &http.Client{Timeout: 200 * time.Millisecond}
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("answered %d, want a client timeout", resp.StatusCode)
	}
	if n := len(s.Entries()); n != 3 {
		t.Fatalf("%d entries stored, want 3: the timed-out request was taken", n)
	}
	// No answer reached the client of the third (0, whether the server
	// has seen it go yet or not).
	if r := s.Requests(); len(r) != 3 || r[0].Status != 502 || r[1].Status != 504 || r[2].Status != 0 {
		t.Fatalf("requests %+v", r)
	}
}

// NewTLS serves HTTPS: a client trusts it only with CAPEM.
func TestTLS(t *testing.T) {
	s := NewTLS("key")
	defer s.Close()
	if !strings.HasPrefix(s.URL, "https://127.0.0.1:") {
		t.Fatalf("URL %s", s.URL)
	}
	req := func() *http.Request {
		r, _ := http.NewRequest(http.MethodPost, s.URL+"/api/v2/logs", strings.NewReader(`[{"message":"a"}]`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("DD-API-KEY", "key")
		return r
	}
	if _, err := http.DefaultClient.Do(req()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted certificate accepted: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CAPEM()) {
		t.Fatal("CAPEM holds no certificate")
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Do(req())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 || len(s.Entries()) != 1 {
		t.Fatalf("status %d, %d entries", resp.StatusCode, len(s.Entries()))
	}
}

// Members other than the reserved ones are the entry's attributes.
func TestAttributes(t *testing.T) {
	s := New("key")
	defer s.Close()
	if st, _, _ := post(t, s.URL, "key", `[{"message":"m","service":"svc","user":{"id":7},"code":200}]`, true); st != 202 {
		t.Fatalf("status %d", st)
	}
	e := s.Entries()[0]
	if e.Service != "svc" || e.Attributes != `{"code":200,"user":{"id":7}}` || string(e.Attribute("user")) != `{"id":7}` || e.Attribute("service") != nil {
		t.Fatalf("entry %+v", e)
	}
}

// "Any log exceeding 1MB is accepted and truncated by Datadog" (2xx): the
// fake answers 202 too, and flags the entry as what sidelog must never
// send (it cuts records itself, keeping them JSON).
func TestEntryOverOneMB(t *testing.T) {
	s := New("key")
	defer s.Close()
	body := `[{"message":"` + strings.Repeat("x", MaxEntryBytes) + `"},{"message":"small"}]`
	if st, _, _ := post(t, s.URL, "key", body, true); st != 202 {
		t.Fatalf("status %d, want 202", st)
	}
	if n := len(s.Entries()); n != 2 {
		t.Fatalf("%d entries stored", n)
	}
	if v := s.Violations(); len(v) != 1 || !strings.Contains(v[0], "entry 0 is") {
		t.Fatalf("violations %q", v)
	}
}
