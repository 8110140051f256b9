package elasticsearch

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/sidelog/sidelog/internal/syncbuf"
	"github.com/sidelog/sidelog/internal/testservers"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
	"github.com/sidelog/sidelog/plugins"
)

// adminLog records the non-bulk requests an estest server sees (through
// its Refuse hook), and refuses those status says.
type adminLog struct {
	mu     sync.Mutex
	calls  []string
	status func(method, path string) int
}

func (a *adminLog) hook(method, path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, method+" "+path)
	if a.status != nil {
		return a.status(method, path)
	}
	return 0
}

func (a *adminLog) list() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.calls, ", ")
}

type templateBody struct {
	IndexPatterns []string  `json:"index_patterns"`
	Priority      int       `json:"priority"`
	DataStream    *struct{} `json:"data_stream"`
	Template      struct {
		Settings map[string]string `json:"settings"`
		Mappings struct {
			Properties map[string]struct {
				Type string `json:"type"`
			} `json:"properties"`
		} `json:"mappings"`
	} `json:"template"`
	Meta map[string]string `json:"_meta"`
}

func setupServer(t *testing.T, mod func(s *estest.Server)) (*estest.Server, *adminLog) {
	s := estest.NewUnstarted()
	a := &adminLog{}
	s.Refuse = a.hook
	if mod != nil {
		mod(s)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, a
}

func setupOutput(t *testing.T, s *estest.Server, name string, mod func(c *Config)) (*Output, *syncbuf.Buffer) {
	lb := &syncbuf.Buffer{}
	o := testOutput(t, func(c *Config) {
		c.Endpoints = []string{s.URL}
		c.Mode = "data_stream"
		c.Index = "logs-{{ service }}-default"
		if mod != nil {
			mod(c)
		}
	}, plugins.OutputEnv{Name: name, Logger: slog.New(slog.NewTextHandler(lb, nil))})
	return o, lb
}

// TestSetupDataStream: in data_stream mode setup is on by default: the
// template is created before the first bulk request (data_stream, the
// @timestamp mapping, priority 200 over the built-in logs-*-*), so the
// first document makes a data stream, not a plain index; a second start
// finds it and leaves it as it is.
func TestSetupDataStream(t *testing.T) {
	s, admin := setupServer(t, nil)
	o, _ := setupOutput(t, s, "App Logs", nil)
	if err := o.Write(t.Context(), docs(t, o, 0, 5)); err != nil {
		t.Fatal(err)
	}
	raw, ok := s.Template("sidelog-app-logs")
	if !ok {
		t.Fatalf("no template; requests: %s", admin.list())
	}
	var tb templateBody
	if err := json.Unmarshal(raw, &tb); err != nil {
		t.Fatal(err)
	}
	if len(tb.IndexPatterns) != 1 || tb.IndexPatterns[0] != "logs-*-default" || tb.Priority != 200 || tb.DataStream == nil ||
		tb.Template.Mappings.Properties["@timestamp"].Type != "date" || tb.Meta["managed_by"] != "sidelog" || tb.Template.Settings != nil {
		t.Errorf("template %s", raw)
	}
	if !s.IsDataStream("logs-svc-default") || s.Count("logs-svc-default") != 5 {
		t.Errorf("data stream %v, %d documents", s.IsDataStream("logs-svc-default"), s.Count("logs-svc-default"))
	}
	if got := admin.list(); got != "GET /, GET /_index_template/sidelog-app-logs, PUT /_index_template/sidelog-app-logs" {
		t.Errorf("requests: %s", got)
	}

	// A second start (another agent, a restart): the template exists and is
	// left alone.
	admin.calls = nil
	o2, logs := setupOutput(t, s, "App Logs", func(c *Config) { c.Lifecycle = "" })
	if err := o2.Write(t.Context(), docs(t, o2, 5, 5)); err != nil {
		t.Fatal(err)
	}
	if got := admin.list(); got != "GET /, GET /_index_template/sidelog-app-logs" {
		t.Errorf("second start: %s", got)
	}
	if !strings.Contains(logs.String(), "exists, left as it is") {
		t.Errorf("log:\n%s", logs)
	}
}

// TestSetupComposesStockLogs: on Elasticsearch 8 a logs-* template lists
// the stock logs template's component templates (it replaces that
// template for its names: priority 200 over 100), ignoring missing ones
// from 8.7; on OpenSearch, Elasticsearch 7 and for other names it
// composes nothing.
func TestSetupComposesStockLogs(t *testing.T) {
	for _, c := range []struct {
		dist, version, index string
		want                 string
		ignore               bool
	}{
		{"elasticsearch", "8.19.0", "logs-{{ service }}-default", "logs@mappings logs@settings logs@custom ecs@mappings", true},
		{"elasticsearch", "8.7.0", "logs-{{ service }}-default", "logs@mappings logs@settings logs@custom ecs@mappings", true},
		{"elasticsearch", "8.5.3", "logs-{{ service }}-default", "logs-mappings data-streams-mappings logs-settings", false},
		{"elasticsearch", "8.19.0", "app-{{ service }}", "", false},
		{"elasticsearch", "7.17.29", "logs-{{ service }}-default", "", false},
		{"opensearch", "2.19.0", "logs-{{ service }}-default", "", false},
	} {
		s, _ := setupServer(t, func(s *estest.Server) { s.Distribution, s.Version = c.dist, c.version })
		o, _ := setupOutput(t, s, "es", func(cf *Config) { cf.Index = c.index })
		if err := o.Write(t.Context(), docs(t, o, 0, 1)); err != nil {
			t.Fatal(err)
		}
		raw, _ := s.Template("sidelog-es")
		var tb struct {
			ComposedOf []string `json:"composed_of"`
			Ignore     []string `json:"ignore_missing_component_templates"`
		}
		_ = json.Unmarshal(raw, &tb)
		if got := strings.Join(tb.ComposedOf, " "); got != c.want || (len(tb.Ignore) > 0) != c.ignore {
			t.Errorf("%s %s %s: composed_of %q ignore %v", c.dist, c.version, c.index, got, tb.Ignore)
		}
	}
}

// TestSetupBulk: bulk mode creates no template unless setup: true, then one
// without data_stream; a lifecycle policy is set only when the server has
// it.
func TestSetupBulk(t *testing.T) {
	s, admin := setupServer(t, func(s *estest.Server) { s.ILMPolicies = []string{"logs-30d"} })
	o, _ := setupOutput(t, s, "plain", func(c *Config) { c.Mode = "bulk"; c.Index = "app-{{ service }}-%Y.%m.%d" })
	if err := o.Write(t.Context(), docs(t, o, 0, 3)); err != nil {
		t.Fatal(err)
	}
	if got := admin.list(); got != "GET /" {
		t.Errorf("bulk mode without setup: %s", got)
	}

	on := true
	for _, c := range []struct {
		policy string
		want   string
	}{{"logs-30d", "logs-30d"}, {"no-such-policy", ""}} {
		name := "bulk-" + c.policy
		o, logs := setupOutput(t, s, name, func(cf *Config) {
			cf.Mode = "bulk"
			cf.Index = "app-{{ service }}-%Y.%m.%d"
			cf.Setup = &on
			cf.Lifecycle = c.policy
		})
		if err := o.Write(t.Context(), docs(t, o, 0, 3)); err != nil {
			t.Fatal(err)
		}
		raw, ok := s.Template("sidelog-" + name)
		if !ok {
			// Same patterns and priority as the first: the server
			// refuses the second; covered below.
			t.Fatalf("%s: no template (%s)\n%s", name, admin.list(), logs)
		}
		var tb templateBody
		_ = json.Unmarshal(raw, &tb)
		if tb.IndexPatterns[0] != "app-*-*.*.*" || tb.DataStream != nil || tb.Template.Settings["index.lifecycle.name"] != c.want {
			t.Errorf("%s: template %s", name, raw)
		}
		if c.want == "" && !strings.Contains(logs.String(), "no such ILM policy") {
			t.Errorf("%s: no warning about the policy:\n%s", name, logs)
		}
		// The server refuses equal priorities on overlapping patterns:
		// delete it before the next one.
		s.Close()
		s, admin = setupServer(t, func(s *estest.Server) { s.ILMPolicies = []string{"logs-30d"} })
	}
}

// TestSetupRefused: 403 on the template endpoints (no
// manage_index_templates privilege), a server that refuses the template
// (same priority on the same patterns as another), and Elasticsearch 7.7
// (no composable templates) each warn, and the documents are delivered.
func TestSetupRefused(t *testing.T) {
	t.Run("403", func(t *testing.T) {
		s, admin := setupServer(t, func(s *estest.Server) { s.DataStreamPrefixes = []string{"logs-"} })
		admin.status = func(method, path string) int {
			if strings.HasPrefix(path, "/_index_template/") {
				return 403
			}
			return 0
		}
		o, logs := setupOutput(t, s, "es", nil)
		if err := o.Write(t.Context(), docs(t, o, 0, 3)); err != nil {
			t.Fatal(err)
		}
		if s.Count("logs-svc-default") != 3 || !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "no privilege") {
			t.Errorf("%d documents; log:\n%s", s.Count("logs-svc-default"), logs)
		}
	})
	t.Run("conflicting template", func(t *testing.T) {
		s, _ := setupServer(t, nil)
		o1, _ := setupOutput(t, s, "one", nil)
		if err := o1.Write(t.Context(), docs(t, o1, 0, 1)); err != nil {
			t.Fatal(err)
		}
		o2, logs := setupOutput(t, s, "two", nil)
		if err := o2.Write(t.Context(), docs(t, o2, 1, 1)); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Template("sidelog-two"); ok || !strings.Contains(logs.String(), "refused the index template") {
			t.Errorf("log:\n%s", logs)
		}
	})
	t.Run("elasticsearch 7.7", func(t *testing.T) {
		s, admin := setupServer(t, func(s *estest.Server) { s.Version = "7.7.1"; s.DataStreamPrefixes = []string{"logs-"} })
		o, logs := setupOutput(t, s, "es", nil)
		if err := o.Write(t.Context(), docs(t, o, 0, 2)); err != nil {
			t.Fatal(err)
		}
		if admin.list() != "GET /" || !strings.Contains(logs.String(), "need Elasticsearch 7.8") {
			t.Errorf("%s\n%s", admin.list(), logs)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		s, admin := setupServer(t, nil)
		fail := true
		admin.status = func(method, path string) int {
			if fail && strings.HasPrefix(path, "/_index_template/") {
				return 503
			}
			return 0
		}
		o, _ := setupOutput(t, s, "es", nil)
		err := o.Write(t.Context(), docs(t, o, 0, 2))
		if classOf(err) != "blocked  server_unreachable" || s.BulkRequests() != 0 {
			t.Fatalf("%v (%d bulk requests)", err, s.BulkRequests())
		}
		admin.mu.Lock()
		fail = false
		admin.mu.Unlock()
		if err := o.Write(t.Context(), docs(t, o, 0, 2)); err != nil {
			t.Fatal(err)
		}
		if !s.IsDataStream("logs-svc-default") {
			t.Error("no data stream after the retry")
		}
	})
}

// TestSetupValidate: a name starting with a field or a date would give a
// template matching every index: refused when setup is asked for.
func TestSetupValidate(t *testing.T) {
	on := true
	c := NewConfig()
	c.Endpoints = []string{"http://127.0.0.1:9200"}
	c.Index = "{{ index }}-x"
	c.Setup = &on
	var ke *plugins.KeyError
	if err := c.Validate(); !errors.As(err, &ke) || ke.Key != "setup" {
		t.Fatalf("got %v", err)
	}
	c.Setup, c.Lifecycle = nil, "p" // bulk mode: setup off
	if err := c.Validate(); !errors.As(err, &ke) || ke.Key != "lifecycle" {
		t.Fatalf("got %v", err)
	}
}

// TestSetupRealNodes: on the real OpenSearch node, data_stream mode with
// setup creates the template and the first write really creates a data
// stream; on Elasticsearch 7.17 (composable templates since 7.8) bulk mode
// with setup: true creates the template that the new index then follows.
func TestSetupRealNodes(t *testing.T) {
	t.Run("opensearch data stream", func(t *testing.T) {
		n := node{t, testservers.OpenSearch(t)}
		name := testservers.UniqueName(t, "ds")
		stream := "logs-" + name + "-default"
		n.cleanup("/_data_stream/"+stream, "/_index_template/sidelog-"+name)
		lb := &syncbuf.Buffer{}
		o := testOutput(t, func(c *Config) {
			c.Endpoints = []string{n.url}
			c.Mode = "data_stream"
			c.Index = "logs-" + name + "-{{ service }}"
		}, plugins.OutputEnv{Name: name, Logger: slog.New(slog.NewTextHandler(lb, nil))})
		// The records' service is svc: the stream is logs-<name>-svc.
		stream = "logs-" + name + "-svc"
		n.cleanup("/_data_stream/" + stream)
		batch := docs(t, o, 0, 50)
		for range 2 {
			if err := o.Write(t.Context(), batch); err != nil {
				t.Fatal(err)
			}
		}
		var ds struct {
			DataStreams []struct {
				Name           string `json:"name"`
				TimestampField struct {
					Name string `json:"name"`
				} `json:"timestamp_field"`
				Template string `json:"template"`
			} `json:"data_streams"`
		}
		if err := json.Unmarshal([]byte(n.must("GET", "/_data_stream/"+stream, "")), &ds); err != nil || len(ds.DataStreams) != 1 {
			t.Fatalf("data stream: %v %+v", err, ds)
		}
		if d := ds.DataStreams[0]; d.Name != stream || d.TimestampField.Name != "@timestamp" || d.Template != "sidelog-"+name {
			t.Errorf("data stream %+v", d)
		}
		if got := n.count(stream); got != 50 {
			t.Errorf("%d documents, want 50 (each once: 409 on the replay)", got)
		}
		tpl := n.must("GET", "/_index_template/sidelog-"+name, "")
		if !strings.Contains(tpl, `"logs-`+name+`-*"`) || !strings.Contains(tpl, `"priority":200`) {
			t.Errorf("template: %s", tpl)
		}
	})
	t.Run("elasticsearch7 bulk template", func(t *testing.T) {
		n := node{t, testservers.Elasticsearch7(t)}
		name := testservers.UniqueName(t, "tpl")
		index := "app-" + name
		n.cleanup("/"+index, "/_index_template/sidelog-"+name)
		on := true
		o := testOutput(t, func(c *Config) {
			c.Endpoints = []string{n.url}
			c.Index = index
			c.Setup = &on
		}, plugins.OutputEnv{Name: name})
		if err := o.Write(t.Context(), docs(t, o, 0, 10)); err != nil {
			t.Fatal(err)
		}
		tpl := n.must("GET", "/_index_template/sidelog-"+name, "")
		if !strings.Contains(tpl, `"index_patterns":["`+index+`"]`) || strings.Contains(tpl, "data_stream") {
			t.Errorf("template: %s", tpl)
		}
		if got := n.count(index); got != 10 {
			t.Errorf("%d documents", got)
		}
	})
	t.Run("elasticsearch7 without data streams", func(t *testing.T) {
		// The shared 7.17 node runs without the x-pack modules, so it has
		// no data streams: the template is refused, the output warns
		// and goes on (documents land in a plain index).
		n := node{t, testservers.Elasticsearch7(t)}
		name := testservers.UniqueName(t, "nods")
		index := "logs-" + name + "-default"
		n.cleanup("/"+index, "/_index_template/sidelog-"+name)
		lb := &syncbuf.Buffer{}
		o := testOutput(t, func(c *Config) {
			c.Endpoints = []string{n.url}
			c.Mode = "data_stream"
			c.Index = index
		}, plugins.OutputEnv{Name: name, Logger: slog.New(slog.NewTextHandler(lb, nil))})
		if err := o.Write(t.Context(), docs(t, o, 0, 3)); err != nil {
			t.Fatal(err)
		}
		if st, _ := n.do("GET", "/_index_template/sidelog-"+name, ""); st != 404 {
			// A 7.17 node with the x-pack modules: then the data stream
			// must exist.
			n.must("GET", "/_data_stream/"+index, "")
			return
		}
		if !strings.Contains(lb.String(), "refused the index template") || !strings.Contains(lb.String(), "data_stream") {
			t.Errorf("no warning naming the refusal:\n%s", lb)
		}
	})
}

// TestSetupNameTakenByOtherNames: the template name comes from the
// output's name, which other agents share ("es"): a template of that name
// for other index names must not leave this output's names without one (a
// data stream would become a plain index, as it did on the shared test
// node). The output's template then gets a name of its own, with a
// warning; a restart finds it.
func TestSetupNameTakenByOtherNames(t *testing.T) {
	s, admin := setupServer(t, nil)
	first, _ := setupOutput(t, s, "es", nil)
	if err := first.Write(t.Context(), docs(t, first, 0, 1)); err != nil {
		t.Fatal(err)
	}
	admin.calls = nil
	o, logs := setupOutput(t, s, "es", func(c *Config) { c.Index = "metrics-{{ service }}-prod" })
	if err := o.Write(t.Context(), docs(t, o, 0, 3)); err != nil {
		t.Fatal(err)
	}
	name := "sidelog-es-" + globHash("metrics-*-prod")
	raw, ok := s.Template(name)
	if !ok {
		t.Fatalf("no template %s; requests: %s", name, admin.list())
	}
	var tb templateBody
	if err := json.Unmarshal(raw, &tb); err != nil {
		t.Fatal(err)
	}
	if len(tb.IndexPatterns) != 1 || tb.IndexPatterns[0] != "metrics-*-prod" || tb.DataStream == nil {
		t.Errorf("template %s", raw)
	}
	if !s.IsDataStream("metrics-svc-prod") || s.Count("metrics-svc-prod") != 3 {
		t.Errorf("data stream %v, %d documents", s.IsDataStream("metrics-svc-prod"), s.Count("metrics-svc-prod"))
	}
	if !strings.Contains(logs.String(), "exists for other index names") {
		t.Errorf("no warning:\n%s", logs)
	}
	if raw, _ := s.Template("sidelog-es"); !strings.Contains(string(raw), "logs-*-default") {
		t.Errorf("the other output's template changed: %s", raw)
	}
	admin.calls = nil
	again, _ := setupOutput(t, s, "es", func(c *Config) { c.Index = "metrics-{{ service }}-prod" })
	if err := again.Write(t.Context(), docs(t, again, 3, 1)); err != nil {
		t.Fatal(err)
	}
	if got := admin.list(); got != "GET /, GET /_index_template/sidelog-es, GET /_index_template/"+name {
		t.Errorf("restart: %s", got)
	}
}
