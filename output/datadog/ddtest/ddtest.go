// Package ddtest is a test double of Datadog's log intake
// (POST /api/v2/logs), listening on 127.0.0.1 only.
//
// It implements what the documentation promises and checks what it asks:
// the DD-API-KEY header (401 when missing, 403 when wrong), Content-Type application/json,
// Content-Encoding gzip, deflate or none, a body that is a JSON array of
// objects each with a string "message". It answers 202 and stores the
// entries. It asserts the limits: a request over 1000 entries or 5,000,000
// bytes uncompressed, or an entry over 1,000,000 bytes, is recorded as a
// violation (Violations) — a request over 5,000,000 bytes is also answered
// 413, as the intake does.
//
// Faults are injected per request, in order (Inject), or by a function
// (SetFaults): 429 with Retry-After, 5xx, 413, 403, or Drop: the entries are
// stored and the connection is closed without an answer (an outcome unknown
// to the client, whose retry makes duplicates). Store with a Status is a
// gateway's answer (502, 504) that comes after the intake took the
// request; Delay holds the answer (a timeout when the client gives up
// first).
//
// Entries older than the 18-hour acceptance window are answered 202 like
// the others, as the intake does, and reported by Stale (the real intake
// drops them). NewTLS serves HTTPS with a certificate that only CAFile's
// PEM makes trusted.
package ddtest

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Limits of the intake.
const (
	MaxEntries      = 1000
	MaxRequestBytes = 5_000_000
	MaxEntryBytes   = 1_000_000
)

// Entry is one stored log entry.
type Entry struct {
	Message           string `json:"message"`
	Service           string `json:"service"`
	Ddsource          string `json:"ddsource"`
	Hostname          string `json:"hostname"`
	Ddtags            string `json:"ddtags"`
	Status            string `json:"status"`
	Timestamp         int64  `json:"timestamp"`
	OriginalTimestamp string `json:"original_timestamp"`
	Truncated         bool   `json:"truncated"`
	// Attributes holds the entry's other members (a record's fields sent
	// as attributes) as one JSON object, keys sorted ("" when none); see
	// Attribute.
	Attributes string `json:"-"`
	// Size is the entry's JSON size in the request.
	Size int `json:"-"`
	// Query holds the request's query parameters (ddtags may be there).
	Query string `json:"-"`
}

// Attribute returns the JSON of the entry's attribute k (nil: none).
func (e *Entry) Attribute(k string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(e.Attributes), &m) != nil {
		return nil
	}
	return m[k]
}

// Fault is what the server does with one request instead of accepting it.
type Fault struct {
	Status     int    // answer with this status (429, 500, 503, 413, 403, ...)
	RetryAfter string // Retry-After header value
	Body       string // answer body
	// Drop stores the entries, then closes the connection without an
	// answer.
	Drop bool
	// Store stores the entries before answering Status: a gateway's 502
	// or 504 after the intake took the request.
	Store bool
	// Delay waits this long (or until the client gives up) before the
	// answer; with Store the entries are stored first.
	Delay time.Duration
}

// Request describes one received request.
type Request struct {
	Entries         int
	Bytes           int // uncompressed
	ContentEncoding string
	Status          int // the answer (0: none reached the client: Drop, or a Delay it gave up on)
	// Received is when the body was read; Ended when the handler
	// returned (zero while it runs): for failure messages.
	Received, Ended time.Time
}

// Server is the fake intake.
type Server struct {
	URL    string
	APIKey string
	// Now is the intake's clock for the acceptance window (default
	// time.Now); set it before sending requests.
	Now func() time.Time

	srv *httptest.Server

	mu         sync.Mutex
	entries    []Entry
	requests   []Request
	violations []string
	stale      []Entry
	faults     []Fault
	faultFn    func(n int, entries int) *Fault
	maxBytes   int
}

// New starts a server on 127.0.0.1 that accepts apiKey. Close it when done.
func New(apiKey string) *Server { return start(apiKey, false) }

// NewTLS is New serving HTTPS with a self-signed certificate for
// 127.0.0.1: CAPEM makes a client trust it.
func NewTLS(apiKey string) *Server { return start(apiKey, true) }

func start(apiKey string, tls bool) *Server {
	s := &Server{APIKey: apiKey, maxBytes: MaxRequestBytes}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.handle))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("ddtest: listen: %v", err))
	}
	s.srv.Listener = l
	if tls {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	s.URL = s.srv.URL
	return s
}

// CAPEM returns the PEM of the certificate of a NewTLS server (nil for
// New), for a client's tls.ca_file.
func (s *Server) CAPEM() []byte {
	if s.srv.Certificate() == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Inject queues faults: each applies to one coming request, in order.
func (s *Server) Inject(f ...Fault) {
	s.mu.Lock()
	s.faults = append(s.faults, f...)
	s.mu.Unlock()
}

// SetFaults installs a function that decides, for the n-th request (from 0)
// holding entries entries, whether to inject a fault (nil: accept).
func (s *Server) SetFaults(fn func(n, entries int) *Fault) {
	s.mu.Lock()
	s.faultFn = fn
	s.mu.Unlock()
}

// SetMaxRequestBytes makes the server answer 413 to requests above n bytes
// (uncompressed) although the documented limit is larger: a proxy in
// between may have a lower limit. Only the documented limit counts as a
// violation.
func (s *Server) SetMaxRequestBytes(n int) {
	s.mu.Lock()
	s.maxBytes = n
	s.mu.Unlock()
}

// Entries returns a copy of the stored entries, in arrival order.
func (s *Server) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Entry(nil), s.entries...)
}

// Requests returns a copy of the received requests.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Violations lists requests that broke a documented limit or the protocol.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

func (s *Server) violate(format string, args ...any) {
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

func answer(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if body == "" {
		body = "{}"
	}
	io.WriteString(w, body)
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	raw, rerr := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	req := Request{ContentEncoding: r.Header.Get("Content-Encoding"), Received: time.Now()}
	n := len(s.requests)
	s.requests = append(s.requests, req)
	rec := &s.requests[n]
	defer func() { s.requests[n].Ended = time.Now() }()
	reply := func(status int, body string) {
		rec.Status = status
		answer(w, status, body)
	}
	if rerr != nil {
		reply(http.StatusBadRequest, `{"errors":["cannot read body"]}`)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/api/v2/logs" {
		s.violate("request %d: %s %s", n, r.Method, r.URL.Path)
		reply(http.StatusNotFound, `{"errors":["not found"]}`)
		return
	}
	if _, ok := r.Header["Dd-Api-Key"]; !ok {
		// Documented: 401 Unauthorized, likely a missing API key.
		reply(http.StatusUnauthorized, `{"errors":["Unauthorized"]}`)
		return
	}
	if r.Header.Get("DD-API-KEY") != s.APIKey {
		reply(http.StatusForbidden, `{"errors":["Forbidden"]}`)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		s.violate("request %d: Content-Type %q", n, ct)
		reply(http.StatusBadRequest, `{"errors":["bad content type"]}`)
		return
	}
	body, err := decompress(req.ContentEncoding, raw)
	if err != nil {
		s.violate("request %d: %v", n, err)
		reply(http.StatusBadRequest, fmt.Sprintf(`{"errors":[%q]}`, err.Error()))
		return
	}
	rec.Bytes = len(body)
	var arr []json.RawMessage
	if err := json.Unmarshal(body, &arr); err != nil {
		s.violate("request %d: body is not a JSON array: %v", n, err)
		reply(http.StatusBadRequest, `{"errors":["bad payload"]}`)
		return
	}
	rec.Entries = len(arr)
	if len(arr) > MaxEntries {
		s.violate("request %d: %d entries (limit %d)", n, len(arr), MaxEntries)
	}
	if len(body) > MaxRequestBytes {
		s.violate("request %d: %d bytes uncompressed (limit %d)", n, len(body), MaxRequestBytes)
	}
	if len(body) > s.maxBytes {
		reply(http.StatusRequestEntityTooLarge, `{"errors":["Payload too large"]}`)
		return
	}
	got := make([]Entry, len(arr))
	for i, e := range arr {
		if len(e) > MaxEntryBytes {
			s.violate("request %d: entry %d is %d bytes (limit %d)", n, i, len(e), MaxEntryBytes)
		}
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(e, &probe); err != nil {
			s.violate("request %d: entry %d is not an object", n, i)
			reply(http.StatusBadRequest, `{"errors":["bad entry"]}`)
			return
		}
		if m, ok := probe["message"]; !ok || len(m) == 0 || m[0] != '"' {
			s.violate("request %d: entry %d has no string message", n, i)
			reply(http.StatusBadRequest, `{"errors":["bad entry"]}`)
			return
		}
		if err := json.Unmarshal(e, &got[i]); err != nil {
			s.violate("request %d: entry %d: %v", n, i, err)
			reply(http.StatusBadRequest, `{"errors":["bad entry"]}`)
			return
		}
		got[i].Size = len(e)
		got[i].Query = r.URL.RawQuery
		attrs := map[string]json.RawMessage{}
		for k, v := range probe {
			switch k {
			case "message", "service", "ddsource", "hostname", "ddtags", "status", "timestamp", "original_timestamp", "truncated":
				continue
			}
			attrs[k] = v
		}
		if len(attrs) > 0 {
			b, _ := json.Marshal(attrs)
			got[i].Attributes = string(b)
		}
	}
	var f *Fault
	if len(s.faults) > 0 {
		f = &s.faults[0]
		s.faults = s.faults[1:]
	} else if s.faultFn != nil {
		f = s.faultFn(n, len(arr))
	}
	if f != nil && f.Drop {
		s.entries = append(s.entries, got...)
		rec.Status = 0
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic("ddtest: cannot hijack")
		}
		conn, _, err := hj.Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	if f != nil && f.Store {
		s.entries = append(s.entries, got...)
		s.noteStale(got)
	}
	if f != nil && f.Delay > 0 {
		s.mu.Unlock()
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
		}
		s.mu.Lock()
		rec = &s.requests[n]
		if r.Context().Err() != nil {
			// The client gave up: no answer reached it (the entries are
			// stored only with Store, taken before the wait).
			rec.Status = 0
			return
		}
	}
	if f != nil && f.Status != 0 {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		reply(f.Status, f.Body)
		return
	}
	if f != nil && f.Store {
		reply(http.StatusAccepted, "{}")
		return
	}
	s.entries = append(s.entries, got...)
	s.noteStale(got)
	reply(http.StatusAccepted, "{}")
}

func decompress(enc string, b []byte) ([]byte, error) {
	switch enc {
	case "", "identity":
		return b, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("gzip: %v", err)
		}
		return io.ReadAll(zr)
	case "deflate":
		zr, err := zlib.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("deflate: %v", err)
		}
		return io.ReadAll(zr)
	}
	return nil, fmt.Errorf("unsupported Content-Encoding %q", enc)
}

// AcceptanceWindow is how old a log's timestamp may be for the intake to
// keep it: "Log events can be submitted with a timestamp that is up to 18
// hours in the past" (the send-logs API documentation). The request is
// still answered 202.
const AcceptanceWindow = 18 * time.Hour

// noteStale records the accepted entries the real intake would drop
// because their timestamp (milliseconds; 0: none, the intake uses its own
// clock) is older than AcceptanceWindow.
func (s *Server) noteStale(got []Entry) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	limit := now().Add(-AcceptanceWindow).UnixMilli()
	for _, e := range got {
		if e.Timestamp != 0 && e.Timestamp < limit {
			s.stale = append(s.stale, e)
		}
	}
}

// Stale returns the accepted entries whose timestamp was older than
// AcceptanceWindow on arrival: the real intake answers 202 for them and
// drops them. They are also in Entries.
func (s *Server) Stale() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Entry(nil), s.stale...)
}
