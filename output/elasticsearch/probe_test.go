package elasticsearch

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/internal/syncbuf"
	"github.com/sidelog/sidelog/internal/testservers"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
	"github.com/sidelog/sidelog/plugins"
)

func loggedOutput(t *testing.T, s *estest.Server, mod func(c *Config)) (*Output, *syncbuf.Buffer) {
	t.Helper()
	lb := &syncbuf.Buffer{}
	o := testOutput(t, func(c *Config) {
		c.Endpoints = []string{s.URL}
		c.Index = "app-{{ service }}"
		if mod != nil {
			mod(c)
		}
	}, plugins.OutputEnv{Name: "es", Logger: slog.New(slog.NewTextHandler(lb, nil))})
	return o, lb
}

// TestProbeDecidesParameters: the probe runs once, before the first bulk
// request, and require_data_stream goes only to Elasticsearch >= 8.13; the
// servers that predate it refuse a request carrying it (estest answers as
// they do), so every write must land on each.
func TestProbeDecidesParameters(t *testing.T) {
	cases := []struct {
		dist, version string
		want          bool
	}{
		{"elasticsearch", "8.19.0", true},
		{"elasticsearch", "8.13.0", true},
		{"elasticsearch", "8.12.2", false},
		{"elasticsearch", "7.17.29", false},
		{"opensearch", "1.3.20", false},
		{"opensearch", "2.19.0", false},
		{"opensearch", "3.1.0", false},
	}
	for _, c := range cases {
		t.Run(c.dist+"-"+c.version, func(t *testing.T) {
			s := estest.NewUnstarted()
			s.Distribution, s.Version = c.dist, c.version
			s.DataStreamPrefixes = []string{"logs-"}
			s.KeepRequests = true
			s.Start()
			defer s.Close()
			o, logs := loggedOutput(t, s, func(c *Config) { c.Mode = "data_stream"; c.Index = "logs-app-default" })
			for i := range 3 {
				if err := o.Write(t.Context(), docs(t, o, i*10, 10)); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
			}
			if n := s.RootRequests(); n != 1 {
				t.Errorf("GET / sent %d times, want once", n)
			}
			for _, r := range s.Requests() {
				if got := strings.Contains(r.Query, "require_data_stream=true"); got != c.want {
					t.Errorf("query %q: require_data_stream %v, want %v", r.Query, got, c.want)
				}
			}
			if s.Count("logs-app-default") != 30 {
				t.Errorf("%d documents, want 30", s.Count("logs-app-default"))
			}
			if !strings.Contains(logs.String(), "server identified") || !strings.Contains(logs.String(), c.dist+" "+c.version) {
				t.Errorf("no log line naming the server:\n%s", logs)
			}
		})
	}
}

// TestProbeUnsupported: a server that is not Elasticsearch >= 7 or
// OpenSearch gets no bulk request at all (the output shows failing with a
// clear error); it is asked again at the next attempt.
func TestProbeUnsupported(t *testing.T) {
	t.Run("elasticsearch 6", func(t *testing.T) {
		s := estest.NewUnstarted()
		s.Version = "6.8.23"
		s.Start()
		defer s.Close()
		o, _ := loggedOutput(t, s, nil)
		for range 2 {
			err := o.Write(t.Context(), docs(t, o, 0, 5))
			if !errors.Is(err, errUnsupported) || !strings.Contains(err.Error(), "Elasticsearch 6.8.23") {
				t.Fatalf("err = %v", err)
			}
			if _, blocked := delivery.AsBlocked(err); blocked {
				t.Fatalf("an unsupported server must show failing, not blocked: %v", err)
			}
			if c, _ := output.Classify(err); c == output.Permanent {
				t.Fatalf("class %v: records must not be dead-lettered at once", c)
			}
		}
		if s.BulkRequests() != 0 {
			t.Errorf("%d bulk requests sent to an unsupported server", s.BulkRequests())
		}
		if s.RootRequests() != 2 {
			t.Errorf("GET / %d times, want 2 (once per attempt until it succeeds)", s.RootRequests())
		}
	})
	for name, h := range map[string]http.HandlerFunc{
		"not json": func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("<html>welcome to nginx</html>"))
		},
		"another product": func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"name":"x","version":{"number":"1.0.0"},"tagline":"Some other search engine"}`))
		},
		"400 on GET /": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
		},
	} {
		t.Run(name, func(t *testing.T) {
			var bulks int
			var mu sync.Mutex
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.URL.Path, "_bulk") {
					mu.Lock()
					bulks++
					mu.Unlock()
					_, _ = w.Write([]byte(`{"errors":false,"items":[]}`))
					return
				}
				h(w, r)
			}))
			defer srv.Close()
			o := testOutput(t, func(c *Config) { c.Endpoints = []string{srv.URL} }, plugins.OutputEnv{})
			err := o.Write(t.Context(), docs(t, o, 0, 3))
			if !errors.Is(err, errUnsupported) {
				t.Fatalf("err = %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if bulks != 0 {
				t.Errorf("%d bulk requests", bulks)
			}
		})
	}
}

// TestProbeForbidden: a least-privilege user without cluster:monitor/main
// (403 on GET /) is warned and goes on with conservative defaults: no
// require_data_stream even where the server would know it.
func TestProbeForbidden(t *testing.T) {
	for _, st := range []int{403, 404} {
		s := estest.NewUnstarted()
		s.DataStreamPrefixes = []string{"logs-"}
		s.KeepRequests = true
		s.Refuse = func(method, path string) int {
			if path == "/" {
				return st
			}
			return 0
		}
		s.Start()
		o, logs := loggedOutput(t, s, func(c *Config) { c.Mode = "data_stream"; c.Index = "logs-app-default" })
		for range 2 {
			if err := o.Write(t.Context(), docs(t, o, 0, 4)); err != nil {
				t.Fatalf("%d: %v", st, err)
			}
		}
		if s.RootRequests() != 1 {
			t.Errorf("%d: GET / %d times, want once", st, s.RootRequests())
		}
		for _, r := range s.Requests() {
			if r.Query != "" {
				t.Errorf("%d: query %q with an unidentified server", st, r.Query)
			}
		}
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "cluster:monitor/main") {
			t.Errorf("%d: no warning:\n%s", st, logs)
		}
		s.Close()
	}
}

// TestProbeUnreachable: while the probe gets no answer the output is
// blocked (never dead-lettered, shown in /status through the BlockState),
// and the delivery loop's backoff retries it until the server answers;
// then every record arrives once.
func TestProbeUnreachable(t *testing.T) {
	s := estest.NewUnstarted()
	failures := 3
	var mu sync.Mutex
	s.Refuse = func(method, path string) int {
		mu.Lock()
		defer mu.Unlock()
		if path == "/" && failures > 0 {
			failures--
			return 503
		}
		return 0
	}
	s.Start()
	defer s.Close()
	o, _ := loggedOutput(t, s, nil)

	err := o.Write(t.Context(), docs(t, o, 0, 2))
	b, ok := delivery.AsBlocked(err)
	if !ok || b.Reason != "server_unreachable" || b.Key != "" || !strings.Contains(err.Error(), "start-up probe") {
		t.Fatalf("err = %v, want the whole output blocked on server_unreachable", err)
	}

	// Connection refused: blocked too.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	_ = ln.Close()
	o2 := testOutput(t, func(c *Config) { c.Endpoints = []string{dead} }, plugins.OutputEnv{})
	if _, ok := delivery.AsBlocked(o2.Write(t.Context(), docs(t, o2, 0, 1))); !ok {
		t.Fatal("connection refused at the probe: not blocked")
	}

	// Through the delivery loop: blocked while the probe fails, then
	// delivered.
	blocks := delivery.NewBlockState(nil)
	buf := memBuffer(t, docs(t, o, 0, 50))
	mu.Lock()
	failures = 4
	mu.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	seenBlocked := make(chan struct{})
	go func() {
		for {
			if bs := blocks.Blocks("es"); len(bs) == 1 && bs[0].Reason == "server_unreachable" {
				close(seenBlocked)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	r := &delivery.Runner{Name: "es", Out: o, Buf: buf, Blocks: blocks, Retry: delivery.RetryConfig{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, MaxElapsed: time.Millisecond}}
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-seenBlocked:
	case <-time.After(5 * time.Second):
		t.Fatal("the output never showed blocked while the probe failed")
	}
	if got := s.Count("app-svc"); got != 50 {
		t.Errorf("%d documents, want 50 (retry.max_elapsed must not give blocked records up)", got)
	}
	if len(blocks.Blocks("es")) != 0 {
		t.Errorf("still blocked: %+v", blocks.Blocks("es"))
	}
}

// memBuffer returns a sealed memory buffer holding recs.
func memBuffer(t *testing.T, recs [][]byte) buffer.Buffer {
	t.Helper()
	b, err := buffer.New(t.TempDir(), buffer.Config{MaxBytes: 64 << 20}, "memory")
	if err != nil {
		t.Fatal(err)
	}
	rs := make([]buffer.Record, len(recs))
	for i, r := range recs {
		rs[i] = buffer.Record{Data: r}
	}
	if err := b.Write(t.Context(), rs); err != nil {
		t.Fatal(err)
	}
	b.Seal()
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestProbeRealNodes: against the real OpenSearch 2.19 and Elasticsearch
// 7.17 nodes, the probe identifies each and data_stream-mode requests carry
// nothing they refuse (each write lands whole, each document once).
func TestProbeRealNodes(t *testing.T) {
	for _, srv := range []struct {
		name, dist string
		url        func(testing.TB) string
	}{{"opensearch", OpenSearch, testservers.OpenSearch}, {"elasticsearch7", Elasticsearch, testservers.Elasticsearch7}} {
		t.Run(srv.name, func(t *testing.T) {
			n := node{t, srv.url(t)}
			index := testservers.UniqueName(t, "sidelog-probe")
			n.cleanup("/" + index)
			lb := &syncbuf.Buffer{}
			o := testOutput(t, func(c *Config) {
				c.Endpoints = []string{n.url}
				c.Index = index
				c.Mode = "data_stream" // op_type create; no data-stream template: a plain index
				c.Setup = new(bool)    // the shared node keeps no template of this test
			}, plugins.OutputEnv{Name: "es", Logger: slog.New(slog.NewTextHandler(lb, nil))})
			batch := docs(t, o, 0, 100)
			for range 2 {
				if err := o.Write(t.Context(), batch); err != nil {
					t.Fatal(err)
				}
			}
			s := o.info.Load()
			if s == nil || s.distribution != srv.dist || s.requireDataStream {
				t.Fatalf("probe: %+v", s)
			}
			if got := n.count(index); got != 100 {
				t.Errorf("%d documents, want 100", got)
			}
			if !strings.Contains(lb.String(), "server identified") {
				t.Errorf("log:\n%s", lb)
			}
		})
	}
}
