package elasticsearch

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
	"github.com/sidelog/sidelog/plugins"
)

// docs encodes n records {"n":i,...} (offsets 1000+i*100) with o.
func docs(t testing.TB, o *Output, from, n int) [][]byte {
	t.Helper()
	out := make([][]byte, 0, n)
	for i := from; i < from+n; i++ {
		raw := fmt.Sprintf(`{"n":%d,"service":"svc","msg":"line %d"}`, i, i)
		e := rawEvent(raw, map[string]any{"n": float64(i), "service": "svc"}, int64(1000+i*100))
		rec, err := o.Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

// docN extracts the number of `"n":<digits>` from a source line, -1 if
// there is none.
func docN(src []byte) int {
	i := bytes.Index(src, []byte(`"n":`))
	if i < 0 {
		return -1
	}
	v, ok := 0, false
	for _, c := range src[i+4:] {
		if c < '0' || c > '9' {
			break
		}
		v, ok = v*10+int(c-'0'), true
	}
	if !ok {
		return -1
	}
	return v
}

func serverOutput(t testing.TB, s *estest.Server, mod func(c *Config)) *Output {
	return testOutput(t, func(c *Config) {
		c.Endpoints = []string{s.URL}
		c.Index = "app-{{ service }}"
		if mod != nil {
			mod(c)
		}
	}, plugins.OutputEnv{Name: "es"})
}

func TestRequestShape(t *testing.T) {
	for _, gz := range []bool{true, false} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			s := estest.New()
			defer s.Close()
			s.KeepRequests = true
			o := serverOutput(t, s, func(c *Config) {
				if !gz {
					c.Compression = "none"
				}
			})
			batch := docs(t, o, 0, 10)
			if err := o.Write(t.Context(), batch); err != nil {
				t.Fatal(err)
			}
			reqs := s.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != "/_bulk" || r.Header.Get("Content-Type") != "application/x-ndjson" {
				t.Fatalf("request %s %s %v", r.Method, r.Path, r.Header)
			}
			if got := r.Header.Get("Content-Encoding"); (got == "gzip") != gz {
				t.Fatalf("Content-Encoding %q", got)
			}
			if gz && r.RawBodyLen >= len(r.Body) {
				t.Fatalf("gzip body %d bytes for %d", r.RawBodyLen, len(r.Body))
			}
			if want := bytes.Join(batch, nil); !bytes.Equal(r.Body, want) {
				t.Fatalf("body differs from the concatenated records:\n%s", r.Body)
			}
			if s.Count("app-svc") != 10 {
				t.Fatalf("indexed %d", s.Count("app-svc"))
			}
			if r.Header.Get("Authorization") != "" {
				t.Fatal("no credentials configured, yet an Authorization header")
			}
		})
	}
}

func TestItemStatuses(t *testing.T) {
	s := estest.New()
	defer s.Close()
	s.ItemFault = func(it estest.Item) *estest.ItemResult {
		switch docN(it.Source) {
		case 1:
			return &estest.ItemResult{Status: 429, Type: "es_rejected_execution_exception", Reason: "rejected execution of coordinating operation"}
		case 2:
			return &estest.ItemResult{Status: 503, Type: "unavailable_shards_exception", Reason: "primary shard is not active"}
		case 3:
			return &estest.ItemResult{Status: 400, Type: "mapper_parsing_exception", Reason: "failed to parse field [n] of type [long]"}
		case 4:
			return &estest.ItemResult{Status: 403, Type: "security_exception", Reason: "action [indices:data/write/bulk[s]] is unauthorized"}
		}
		return nil
	}
	o := serverOutput(t, s, nil)
	batch := docs(t, o, 0, 6)
	err := o.Write(t.Context(), batch)
	var be *output.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("want a BatchError, got %v", err)
	}
	// A 403 security_exception on an item is the index's privileges, not
	// the document: the index is blocked, never dead-lettered.
	want := map[int]string{1: "throttled", 2: "retryable", 3: "permanent", 4: "blocked app-svc security_exception"}
	if len(be.Failed) != len(want) {
		t.Fatalf("failed %v", be.Failed)
	}
	for i, c := range want {
		if got := classOf(be.Failed[i]); got != c {
			t.Errorf("item %d: class %v, want %v (%v)", i, got, c, be.Failed[i])
		}
	}
	if msg := be.Failed[3].Error(); !strings.Contains(msg, "mapper_parsing_exception: failed to parse field [n] of type [long]") || !strings.Contains(msg, "app-svc") {
		t.Errorf("reason: %s", msg)
	}
	if s.Count("app-svc") != 2 {
		t.Fatalf("indexed %d, want items 0 and 5", s.Count("app-svc"))
	}
	// Retrying only the failed ones, after the faults clear, completes the
	// index without duplicates (index with explicit _id).
	s.ItemFault = nil
	retry := [][]byte{batch[1], batch[2]}
	if err := o.Write(t.Context(), retry); err != nil {
		t.Fatal(err)
	}
	if err := o.Write(t.Context(), batch); err != nil { // a full replay
		t.Fatal(err)
	}
	if s.Count("app-svc") != 6 {
		t.Fatalf("indexed %d, want 6", s.Count("app-svc"))
	}
}

func TestCreateConflictIsDelivered(t *testing.T) {
	s := estest.New()
	defer s.Close()
	s.DataStreamPrefixes = []string{"logs-"}
	o := serverOutput(t, s, func(c *Config) { c.Mode = "data_stream"; c.Index = "logs-{{ service }}-default" })
	batch := docs(t, o, 0, 5)
	if err := o.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if err := o.Write(t.Context(), batch); err != nil { // replay after a crash: 409s
		t.Fatalf("a replay must count 409 as delivered: %v", err)
	}
	if s.Count("logs-svc-default") != 5 || s.ItemErrors()[409] != 5 {
		t.Fatalf("count %d, errors %v", s.Count("logs-svc-default"), s.ItemErrors())
	}
}

func TestBulkModeOnDataStreamIsRefused(t *testing.T) {
	// The documented trap: mode bulk into a name a data-stream template
	// matches. Elasticsearch refuses every item: a configuration error,
	// so the data stream is blocked (nothing dead-lettered) until the
	// mode is fixed.
	s := estest.New()
	defer s.Close()
	s.DataStreamPrefixes = []string{"logs-"}
	o := serverOutput(t, s, func(c *Config) { c.Index = "logs-{{ service }}-default" })
	err := o.Write(t.Context(), docs(t, o, 0, 2))
	var be *output.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 || !strings.Contains(be.Failed[0].Error(), "op_type of create") {
		t.Fatalf("got %v", err)
	}
	if c := classOf(be.Failed[0]); c != "blocked logs-svc-default data_stream_op_type" {
		t.Fatal(c)
	}
}

func TestWholeRequestErrors(t *testing.T) {
	cases := []struct {
		name  string
		fault estest.RequestFault
		class string
		after time.Duration
	}{
		{"429 with Retry-After", estest.RequestFault{Status: 429, RetryAfter: "7"}, "throttled", 7 * time.Second},
		{"429 with a Retry-After of an hour is capped", estest.RequestFault{Status: 429, RetryAfter: "3600"}, "throttled", maxRetryAfter},
		{"503", estest.RequestFault{Status: 503}, "retryable", 0},
		{"500", estest.RequestFault{Status: 500}, "retryable", 0},
		// Credentials and privileges: the whole output is blocked
		// (never dead-lettered, shown in /status).
		{"401 blocks the output", estest.RequestFault{Status: 401, Type: "security_exception", Reason: "unable to authenticate user [x]"}, "blocked  security_exception", 0},
		{"403 security_exception blocks the output", estest.RequestFault{Status: 403, Type: "security_exception", Reason: "action [indices:data/write/bulk] is unauthorized for user [x]"}, "blocked  security_exception", 0},
		{"403 from a proxy blocks the output", estest.RequestFault{Status: 403, Type: "", Reason: ""}, "blocked  estest_injected_exception", 0},
		{"429 flood-stage block is blocked, not throttled", estest.RequestFault{Status: 429, Type: "cluster_block_exception", Reason: "index [app-svc] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];"}, "blocked  cluster_block_exception", 0},
		{"400 is never dead-lettered", estest.RequestFault{Status: 400}, "retryable", 0},
		{"dropped connection", estest.RequestFault{Drop: true}, "retryable", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := estest.New()
			defer s.Close()
			f := c.fault
			s.Fault = func(n int, _ *http.Request) *estest.RequestFault {
				if n == 1 {
					return &f
				}
				return nil
			}
			o := serverOutput(t, s, nil)
			batch := docs(t, o, 0, 3)
			err := o.Write(t.Context(), batch)
			if err == nil {
				t.Fatal("no error")
			}
			var be *output.BatchError
			if errors.As(err, &be) {
				t.Fatalf("a whole-request failure must be a plain error, got %v", be.Failed)
			}
			_, after := output.Classify(err)
			if cl := classOf(err); cl != c.class || after != c.after {
				t.Fatalf("class %v after %v (%v)", cl, after, err)
			}
			if err := o.Write(t.Context(), batch); err != nil {
				t.Fatalf("second attempt: %v", err)
			}
			if s.Count("app-svc") != 3 {
				t.Fatal(s.Count("app-svc"))
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	s := estest.New()
	defer s.Close()
	s.Fault = func(n int, _ *http.Request) *estest.RequestFault {
		if n == 1 {
			return &estest.RequestFault{Delay: 10 * time.Second}
		}
		return nil
	}
	o := serverOutput(t, s, func(c *Config) { c.Timeout = 200 * time.Millisecond })
	start := time.Now()
	err := o.Write(t.Context(), docs(t, o, 0, 2))
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("got %v", err)
	}
	if c, _ := output.Classify(err); c != output.Retryable {
		t.Fatal(c)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestSplitOn413(t *testing.T) {
	s := estest.New()
	defer s.Close()
	s.KeepRequests = true
	o := serverOutput(t, s, func(c *Config) { c.Compression = "none" })
	batch := docs(t, o, 0, 8)
	big := rawEvent(`{"service":"svc","blob":"`+strings.Repeat("x", 3000)+`"}`, map[string]any{"service": "svc"}, 999999)
	bigRec, err := o.Encode(nil, big)
	if err != nil {
		t.Fatal(err)
	}
	batch = append(batch[:4], append([][]byte{bigRec}, batch[4:]...)...)
	// Room for a few small records, not for the big one.
	s.MaxContentLength = 2000
	err = o.Write(t.Context(), batch)
	var be *output.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[4] == nil {
		t.Fatalf("want only the big record failed, got %v", err)
	}
	if c, _ := output.Classify(be.Failed[4]); c != output.Permanent || !strings.Contains(be.Failed[4].Error(), "413") {
		t.Fatalf("big record: %v", be.Failed[4])
	}
	if s.Count("app-svc") != 8 {
		t.Fatalf("indexed %d", s.Count("app-svc"))
	}
	for _, r := range s.Requests() {
		if r.RawBodyLen > 2000 {
			continue // the refused ones
		}
		if r.Items == 0 {
			t.Fatal("empty request")
		}
	}
}

func TestMaxRequestBytesAndInFlight(t *testing.T) {
	s := estest.New()
	defer s.Close()
	var cur, peak atomic.Int32
	release := make(chan struct{})
	s.Fault = func(n int, _ *http.Request) *estest.RequestFault {
		c := cur.Add(1)
		for {
			p := peak.Load()
			if c <= p || peak.CompareAndSwap(p, c) {
				break
			}
		}
		if n <= 2 {
			<-release // hold the first two requests until both are in
		}
		cur.Add(-1)
		return nil
	}
	s.KeepRequests = true
	o := serverOutput(t, s, func(c *Config) { c.MaxRequestBytes = 1024; c.MaxInFlight = 2 })
	batch := docs(t, o, 0, 40)
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for cur.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // polling a condition with a deadline
		}
		close(release)
	}()
	if err := o.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if peak.Load() != 2 {
		t.Fatalf("peak in flight %d, want 2", peak.Load())
	}
	reqs := s.Requests()
	if len(reqs) < 4 {
		t.Fatalf("%d requests for 40 records of ~%d bytes with a 1KiB bound", len(reqs), len(batch[0]))
	}
	for _, r := range reqs {
		if len(r.Body) > 1024 {
			t.Fatalf("request of %d bytes", len(r.Body))
		}
	}
	if s.Count("app-svc") != 40 {
		t.Fatal(s.Count("app-svc"))
	}
}

func TestFailover(t *testing.T) {
	// A port with nothing listening: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	s := estest.New()
	defer s.Close()
	bad := estest.New()
	defer bad.Close()
	bad.Fault = func(int, *http.Request) *estest.RequestFault { return &estest.RequestFault{Status: 503} }

	o := testOutput(t, func(c *Config) {
		c.Endpoints = []string{dead, bad.URL, s.URL}
		c.Index = "app-{{ service }}"
	}, plugins.OutputEnv{})
	for i := range 6 {
		if err := o.Write(t.Context(), docs(t, o, i*5, 5)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if s.Count("app-svc") != 30 {
		t.Fatal(s.Count("app-svc"))
	}
}

func TestAuthHeaders(t *testing.T) {
	const secret = "p4ss-w0rd-SECRET"
	cases := []struct {
		name string
		auth estest.Auth
		mod  func(c *Config)
	}{
		{"basic", estest.Auth{Username: "elastic", Password: secret}, func(c *Config) { c.Username, c.Password = "elastic", secret }},
		{"api key", estest.Auth{APIKey: secret}, func(c *Config) { c.APIKey = secret }},
		{"bearer", estest.Auth{BearerToken: secret}, func(c *Config) { c.BearerToken = secret }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := estest.New()
			defer s.Close()
			a := c.auth
			s.Auth = &a
			o := serverOutput(t, s, c.mod)
			if err := o.Write(t.Context(), docs(t, o, 0, 2)); err != nil {
				t.Fatal(err)
			}
			// A wrong secret: 401, retryable, and the error does not quote
			// either secret.
			wrong := serverOutput(t, s, func(cfg *Config) {
				c.mod(cfg)
				cfg.Password = strings.ReplaceAll(cfg.Password, "SECRET", "WRONG")
				cfg.APIKey = strings.ReplaceAll(cfg.APIKey, "SECRET", "WRONG")
				cfg.BearerToken = strings.ReplaceAll(cfg.BearerToken, "SECRET", "WRONG")
			})
			err := wrong.Write(t.Context(), docs(t, wrong, 0, 1))
			if err == nil || !strings.Contains(err.Error(), "401") {
				t.Fatalf("got %v", err)
			}
			if strings.Contains(err.Error(), "p4ss") {
				t.Fatalf("secret in error: %v", err)
			}
		})
	}
}

func TestSecretsNotInErrors(t *testing.T) {
	const secret = "TOPSECRET-123"
	// Connection refused, with credentials configured: the error names the
	// endpoint, never the credentials.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, mod := range []func(c *Config){
		func(c *Config) { c.Username, c.Password = "elastic", secret },
		func(c *Config) { c.APIKey = secret },
		func(c *Config) { c.BearerToken = secret },
	} {
		o := testOutput(t, func(c *Config) { c.Endpoints = []string{"http://" + addr}; mod(c) }, plugins.OutputEnv{})
		err := o.Write(t.Context(), docs(t, o, 0, 1))
		if err == nil {
			t.Fatal("no error")
		}
		if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), addr) {
			t.Fatalf("error: %v", err)
		}
	}
	// A server that echoes the Authorization header into its error reason
	// (a hostile proxy): the echoed secret is redacted.
	echo := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.WriteHeader(502)
		fmt.Fprintf(w, `{"error":{"type":"proxy","reason":"bad header %s"},"status":502}`, r.Header.Get("Authorization"))
	})}
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = echo.Serve(l) }()
	defer echo.Close()
	o := testOutput(t, func(c *Config) { c.Endpoints = []string{"http://" + l.Addr().String()}; c.APIKey = secret }, plugins.OutputEnv{})
	err = o.Write(t.Context(), docs(t, o, 0, 1))
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Fatalf("error: %v", err)
	}
}

func TestContextCancelled(t *testing.T) {
	s := estest.New()
	defer s.Close()
	s.Fault = func(int, *http.Request) *estest.RequestFault { return &estest.RequestFault{Delay: 10 * time.Second} }
	o := serverOutput(t, s, nil)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for s.BulkRequests() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	err := o.Write(ctx, docs(t, o, 0, 2))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestEstestStrictParsing(t *testing.T) {
	s := estest.New()
	defer s.Close()
	post := func(body string, gz bool) (int, string) {
		var rd io.Reader = strings.NewReader(body)
		if gz {
			var b bytes.Buffer
			w := gzip.NewWriter(&b)
			_, _ = io.WriteString(w, body)
			_ = w.Close()
			rd = &b
		}
		req, _ := http.NewRequest("POST", s.URL+"/_bulk", rd)
		req.Header.Set("Content-Type", "application/x-ndjson")
		if gz {
			req.Header.Set("Content-Encoding", "gzip")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("X-Elastic-Product") != "Elasticsearch" {
			t.Fatal("missing X-Elastic-Product")
		}
		return resp.StatusCode, string(b)
	}
	cases := []struct {
		body   string
		status int
		want   string
	}{
		{`{"index":{"_index":"a"}}` + "\n" + `{"x":1}`, 400, "terminated by a newline"},
		{`{"index":{"_index":"a"}}` + "\n", 400, "no source line"},
		{`{"upsert":{"_index":"a"}}` + "\n{}\n", 400, "expected one of"},
		{`not json` + "\n{}\n", 400, "Malformed action"},
		{`{"index":{"_index":"a","bogus":1}}` + "\n{}\n", 400, "unknown parameter"},
		{`{"index":{"_index":"a"}}` + "\n" + `[1]` + "\n", 200, "document_parsing_exception"},
		{`{"index":{"_index":"A"}}` + "\n{}\n", 200, "invalid_index_name_exception"},
		{`{"index":{"_index":"a","_id":"1"}}` + "\n{}\n" + `{"create":{"_index":"a","_id":"1"}}` + "\n{}\n", 200, "version_conflict_engine_exception"},
		{`{"index":{"_index":"d","_id":"1"}}` + "\n{}\n" + `{"delete":{"_index":"d","_id":"1"}}` + "\n", 200, `"result":"deleted"`},
		{`{"delete":{"_index":"d","_id":"404"}}` + "\n", 200, `{"errors":false,`},
		{`{"index":{"_index":"a","pipeline":"nope"}}` + "\n{}\n", 200, "pipeline with id [nope] does not exist"},
	}
	for _, c := range cases {
		for _, gz := range []bool{false, true} {
			status, body := post(c.body, gz)
			if status != c.status || !strings.Contains(body, c.want) {
				t.Errorf("%q (gzip %v): %d %s", c.body, gz, status, body)
			}
		}
	}
	resp, err := http.Get(s.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(info), `"number":"8.`) || resp.Header.Get("X-Elastic-Product") != "Elasticsearch" {
		t.Fatalf("GET /: %s", info)
	}
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatalf("listens on %s", s.URL)
	}
}

// noProductHeader drops X-Elastic-Product from every answer, as OpenSearch
// and Elasticsearch before 7.14 do.
type noProductHeader struct{ http.ResponseWriter }

func (w noProductHeader) WriteHeader(code int) {
	w.Header().Del("X-Elastic-Product")
	w.ResponseWriter.WriteHeader(code)
}

func (w noProductHeader) Write(b []byte) (int, error) {
	w.Header().Del("X-Elastic-Product")
	return w.ResponseWriter.Write(b)
}

// TestServerWithoutProductHeader: a server that does not send
// X-Elastic-Product (OpenSearch, Elasticsearch < 7.14) gets each bulk
// request once and stores every document once. (The root go-elasticsearch
// client refused such a 2xx answer after the documents were applied, so
// the delivery loop resent them forever.)
func TestServerWithoutProductHeader(t *testing.T) {
	srv := estest.NewUnstarted()
	inner := srv.Server.Config.Handler
	srv.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(noProductHeader{w}, r)
	})
	srv.Start()
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Elastic-Product") != "" {
		t.Fatalf("the stand-in answers %d with X-Elastic-Product %q", resp.StatusCode, resp.Header.Get("X-Elastic-Product"))
	}

	o := testOutput(t, func(c *Config) { c.Endpoints = []string{srv.URL} }, plugins.OutputEnv{})
	want := 0
	for i, n := range []int{1, 10, 25} {
		if err := o.Write(t.Context(), docs(t, o, want, n)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		want += n
	}
	if got := srv.BulkRequests(); got != 3 {
		t.Errorf("%d bulk requests, want 3 (one per Write)", got)
	}
	if got := srv.ItemsSeen(); got != want {
		t.Errorf("%d documents received, want %d (each once)", got, want)
	}
	if got := srv.Total(); got != want {
		t.Errorf("%d documents stored, want %d", got, want)
	}
}
