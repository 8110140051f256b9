package opensearch

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/internal/syncbuf"
	"github.com/sidelog/sidelog/internal/testservers"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/elasticsearch"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
	"github.com/sidelog/sidelog/plugins"
)

// build makes an opensearch output through the registry, as the agent does.
func build(t *testing.T, endpoint, index string) (output.Output, *syncbuf.Buffer) {
	t.Helper()
	p, ok := plugins.Default.Output("opensearch")
	if !ok {
		t.Fatal("opensearch is not registered")
	}
	cfg := p.Config().(*elasticsearch.Config)
	cfg.Endpoints = []string{endpoint}
	cfg.Index = index
	lb := &syncbuf.Buffer{}
	o, err := p.New(cfg, plugins.OutputEnv{Name: "search", InstanceID: "i-1", Hostname: "h", Logger: slog.New(slog.NewTextHandler(lb, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close(t.Context()) })
	return o, lb
}

func batch(t *testing.T, o output.Output, n int) [][]byte {
	t.Helper()
	var recs [][]byte
	for i := range n {
		raw := fmt.Sprintf(`{"n":%d,"msg":"line %d"}`, i, i)
		e := &event.Event{Raw: []byte(raw), Fields: map[string]any{}, Flags: event.RawJSON, Time: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC),
			Pos: event.Position{FileID: event.FileID{Dev: 1, Ino: 7}, Offset: int64(100 + i*50)}}
		rec, err := o.Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// TestOpenSearchType: type opensearch is the elasticsearch code; it writes
// to an OpenSearch node and warns (but works) when the probe finds
// Elasticsearch.
func TestOpenSearchType(t *testing.T) {
	for _, dist := range []string{"opensearch", "elasticsearch"} {
		s := estest.NewUnstarted()
		s.Distribution = dist
		s.Start()
		o, logs := build(t, s.URL, "app")
		if err := o.Write(t.Context(), batch(t, o, 20)); err != nil {
			t.Fatalf("%s: %v", dist, err)
		}
		if s.Count("app") != 20 {
			t.Errorf("%s: %d documents", dist, s.Count("app"))
		}
		warned := strings.Contains(logs.String(), "not opensearch")
		if warned != (dist != "opensearch") {
			t.Errorf("%s: warned %v:\n%s", dist, warned, logs)
		}
		if !strings.Contains(logs.String(), "opensearch:") {
			t.Errorf("%s: messages do not name the type:\n%s", dist, logs)
		}
		s.Close()
	}
}

// TestOpenSearchRealNode: the real OpenSearch node gets every document once
// through type opensearch, also when a batch is sent twice (id: source).
func TestOpenSearchRealNode(t *testing.T) {
	url := testservers.OpenSearch(t)
	index := testservers.UniqueName(t, "sidelog-ostype")
	t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", url+"/"+index, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	o, logs := build(t, url, index)
	recs := batch(t, o, 300)
	for range 2 {
		if err := o.Write(t.Context(), recs); err != nil {
			t.Fatal(err)
		}
	}
	get := func(path string) []byte {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	resp, err := http.Post(url+"/"+index+"/_refresh", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var c struct{ Count int }
	if err := json.Unmarshal(get("/"+index+"/_count"), &c); err != nil || c.Count != 300 {
		t.Fatalf("count %d (%v), want 300", c.Count, err)
	}
	if !strings.Contains(logs.String(), "server identified") || !strings.Contains(logs.String(), "opensearch 2.") {
		t.Errorf("log:\n%s", logs)
	}
}
