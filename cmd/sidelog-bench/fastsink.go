package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
)

// fastSink is a counting stand-in for Elasticsearch's _bulk API or the
// Datadog logs intake, cheap enough not to compete with sidelog for the
// machine's cores. estest and ddtest check every document and keep it in
// memory; on a 2-core machine they spend more CPU than sidelog itself (see
// docs/benchmarks.md), so the throughput measured against them is theirs.
// The fast sink decompresses each request, counts its documents, keeps the
// first one as a sample, checks the framing, and answers success. The full
// fakes remain available with -sink full.
type fastSink struct {
	srv    *httptest.Server
	URL    string
	kind   string // es | dd
	apiKey string

	docs     atomic.Int64
	requests atomic.Int64

	mu       sync.Mutex
	sample   []byte // es: the first action line + "\n" + source; dd: the first entry
	problems []string
}

var gzipReaders sync.Pool

func newFastSink(kind, apiKey string) *fastSink {
	s := &fastSink{kind: kind, apiKey: apiKey}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	s.URL = s.srv.URL
	return s
}

func (s *fastSink) Close() { s.srv.Close() }

// Docs is the number of documents (ES) or entries (DD) accepted.
func (s *fastSink) Docs() int64 { return s.docs.Load() }

// Sample returns the first document received.
func (s *fastSink) Sample() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sample
}

// Problems lists protocol errors seen (wrong framing, key, encoding).
func (s *fastSink) Problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.problems...)
}

func (s *fastSink) problem(w http.ResponseWriter, status int, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	s.mu.Lock()
	if len(s.problems) < 20 {
		s.problems = append(s.problems, msg)
	}
	s.mu.Unlock()
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"type":"sidelog_bench","reason":%q},"status":%d}`, msg, status)
}

func (s *fastSink) handle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if s.kind == "es" {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		if r.URL.Path == "/" {
			_, _ = io.WriteString(w, `{"name":"sidelog-bench","cluster_name":"sidelog-bench","version":{"number":"8.19.0","build_flavor":"default"},"tagline":"You Know, for Search"}`)
			return
		}
	}
	body, err := s.body(r)
	if err != nil {
		s.problem(w, http.StatusBadRequest, "%s %s: %v", r.Method, r.URL.Path, err)
		return
	}
	s.requests.Add(1)
	switch {
	case s.kind == "es" && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/_bulk"):
		s.bulk(w, body)
	case s.kind == "dd" && r.Method == http.MethodPost && r.URL.Path == "/api/v2/logs":
		if r.Header.Get("DD-API-KEY") != s.apiKey {
			s.problem(w, http.StatusForbidden, "wrong DD-API-KEY")
			return
		}
		s.logs(w, body)
	default:
		s.problem(w, http.StatusNotFound, "unexpected %s %s", r.Method, r.URL.Path)
	}
}

// body reads the request body, gunzipped when it says so.
func (s *fastSink) body(r *http.Request) ([]byte, error) {
	var rd io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		if zr == nil {
			var err error
			if zr, err = gzip.NewReader(r.Body); err != nil {
				return nil, err
			}
		} else if err := zr.Reset(r.Body); err != nil {
			return nil, err
		}
		defer gzipReaders.Put(zr)
		rd = zr
	}
	return io.ReadAll(rd)
}

// bulk counts the action+source pairs of a _bulk body and answers that
// each was created.
func (s *fastSink) bulk(w http.ResponseWriter, body []byte) {
	if len(body) == 0 || body[len(body)-1] != '\n' {
		s.problem(w, http.StatusBadRequest, "bulk body does not end with a newline")
		return
	}
	lines := bytes.Count(body, []byte{'\n'})
	if lines%2 != 0 {
		s.problem(w, http.StatusBadRequest, "bulk body has %d lines, not action+source pairs", lines)
		return
	}
	if !bytes.HasPrefix(body, []byte(`{"index"`)) && !bytes.HasPrefix(body, []byte(`{"create"`)) {
		s.problem(w, http.StatusBadRequest, "bulk body starts with %.40q", body)
		return
	}
	n := lines / 2
	i := bytes.IndexByte(body, '\n')
	j := i + 1 + bytes.IndexByte(body[i+1:], '\n')
	s.keepSample(body[:j]) // the first action and source lines
	s.docs.Add(int64(n))
	op := "index"
	if body[2] == 'c' {
		op = "create"
	}
	item := `{"` + op + `":{"status":201,"result":"created"}}`
	resp := make([]byte, 0, 40+n*(len(item)+1))
	resp = append(resp, `{"errors":false,"took":1,"items":[`...)
	for i := range n {
		if i > 0 {
			resp = append(resp, ',')
		}
		resp = append(resp, item...)
	}
	resp = append(resp, "]}"...)
	_, _ = w.Write(resp)
}

// logs counts the entries of a Datadog intake body (a JSON array of
// objects) without decoding them.
func (s *fastSink) logs(w http.ResponseWriter, body []byte) {
	n, first, err := countArray(body)
	if err != nil {
		s.problem(w, http.StatusBadRequest, "logs body: %v", err)
		return
	}
	s.keepSample(first)
	s.docs.Add(int64(n))
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, "{}")
}

func (s *fastSink) keepSample(b []byte) {
	s.mu.Lock()
	if s.sample == nil {
		s.sample = append([]byte{}, b...)
	}
	s.mu.Unlock()
}

// countArray counts the elements of a top-level JSON array of objects and
// returns the first one, checking only the structure (brackets, strings).
func countArray(b []byte) (int, []byte, error) {
	b = bytes.TrimSpace(b)
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return 0, nil, fmt.Errorf("not a JSON array")
	}
	n, depth, start := 0, 0, -1
	var first []byte
	for i := 1; i < len(b)-1; i++ {
		c := b[i]
		if depth == 0 && c != '{' && c != ',' && c != ' ' && c != '\n' && c != '\t' && c != '\r' {
			return n, first, fmt.Errorf("element %d is not an object", n)
		}
		switch c {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			if depth == 0 {
				start = i
			}
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				return n, first, fmt.Errorf("unbalanced %q at %d", c, i)
			}
			if depth == 0 {
				if first == nil {
					first = b[start : i+1]
				}
				n++
			}
		}
	}
	if depth != 0 {
		return n, first, fmt.Errorf("unterminated element")
	}
	return n, first, nil
}

// verifyESSample checks the first bulk pair the fast sink kept.
func verifyESSample(pair []byte) error {
	action, source, ok := bytes.Cut(pair, []byte{'\n'})
	if !ok {
		return fmt.Errorf("no sample document")
	}
	var a map[string]struct {
		Index string `json:"_index"`
	}
	if err := json.Unmarshal(action, &a); err != nil {
		return fmt.Errorf("action line %q: %w", action, err)
	}
	var m map[string]any
	if err := json.Unmarshal(source, &m); err != nil {
		return fmt.Errorf("source line: %w", err)
	}
	for _, v := range a {
		if want := "app-" + fmt.Sprint(m["service"]); v.Index != want {
			return fmt.Errorf("document of service %v sent to index %q", m["service"], v.Index)
		}
	}
	return checkComputed(m)
}

// verifyDDEntry checks one Datadog entry: a service, and the record with
// its kubernetes metadata in the message.
func verifyDDEntry(service, message string) error {
	if service == "" || !strings.Contains(message, "trace_id") {
		return fmt.Errorf("entry lacks the service or the record: service %q, message %.200q", service, message)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(message), &m); err != nil {
		return fmt.Errorf("message is not the record as JSON: %w", err)
	}
	k, _ := m["kubernetes"].(map[string]any)
	if k["namespace"] != "shop" || k["pod"] != "checkout-6d8f9c7b5-x7k2p" || k["container"] != "app" {
		return fmt.Errorf("entry lacks the kubernetes metadata: %v", m["kubernetes"])
	}
	return nil
}
