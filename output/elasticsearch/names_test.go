package elasticsearch

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/internal/testservers"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
	"github.com/sidelog/sidelog/plugins"
)

// TestIndexNamesStatic: a static index name Elasticsearch would refuse is
// refused at load, naming the key; so is a template whose fixed start is
// refused.
func TestIndexNamesStatic(t *testing.T) {
	for index, want := range map[string]string{
		"-app":                   "must not start with '-'",
		"_app":                   "must not start with '_'",
		"+app":                   "must not start with '+'",
		".":                      "must not be . or ..",
		"..":                     "must not be . or ..",
		strings.Repeat("a", 256): "at most 255 bytes",
		"App":                    "lowercase",
		"a b":                    `" " may not appear`,
		"a,b":                    `"," may not appear`,
		"a#b":                    `"#" may not appear`,
		`a"b`:                    `"\"" may not appear`,
		"a|b":                    `"|" may not appear`,
		"_{{ service }}":         "must not start with '_'",
		"-%Y.%m":                 "must not start with '-'",
	} {
		c := NewConfig()
		c.Endpoints = []string{"http://127.0.0.1:9200"}
		c.Index = index
		err := c.Validate()
		var ke *plugins.KeyError
		if !errors.As(err, &ke) || ke.Key != "index" || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q on index", index, err, want)
		}
	}
	for _, ok := range []string{"app", ".app", "a.b", strings.Repeat("a", 255), "{{ service }}-x", "%Y", "app-{{ a }}"} {
		c := NewConfig()
		c.Endpoints = []string{"http://127.0.0.1:9200"}
		c.Index = ok
		if err := c.Validate(); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}

// TestIndexNamesRendered: what a template renders is sanitised (lower
// case, refused characters become _); what cannot be sanitised (a refused
// first character, . or .., past 255 bytes, empty) is an encoding error
// with the reason, which the pipeline writes to the dead-letter file.
func TestIndexNamesRendered(t *testing.T) {
	o := testOutput(t, func(c *Config) { c.Index = "{{ svc }}" }, plugins.OutputEnv{})
	for svc, want := range map[string]string{
		"App":                    "app",
		"a b/c*d?e<f>g|h,i#j\\k": "a_b_c_d_e_f_g_h_i_j_k",
		"Ünïcode":                "ünïcode",
	} {
		rec, err := o.Encode(nil, rawEvent(`{}`, map[string]any{"svc": svc}, 100))
		if err != nil {
			t.Fatalf("%q: %v", svc, err)
		}
		if got := actionIndex(rec); got != want {
			t.Errorf("%q: index %q, want %q", svc, got, want)
		}
	}
	for svc, want := range map[string]string{
		"-x":                     "must not start with '-'",
		"_x":                     "must not start with '_'",
		"+x":                     "must not start with '+'",
		".":                      "must not be . or ..",
		"..":                     "must not be . or ..",
		strings.Repeat("x", 300): "at most 255 bytes, this one has 300",
	} {
		rec, err := o.Encode([]byte("keep"), rawEvent(`{}`, map[string]any{"svc": svc}, 100))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "{{ svc }}") {
			t.Errorf("%q: %v, want %q", svc, err, want)
		}
		if string(rec) != "keep" {
			t.Errorf("%q: dst changed to %q", svc, rec)
		}
	}
}

// TestIDKey: id_key takes _id from a record field (JSON-escaped); a record
// without it gets the stable source id (id: source) or none (id: none). A
// record sent twice with the same key is stored once.
func TestIDKey(t *testing.T) {
	s := estest.New()
	defer s.Close()
	o := serverOutput(t, s, func(c *Config) { c.IDKey = "req.id" })
	if !contains(o.Keys(), "req") {
		t.Errorf("Keys %v: the parser must provide req", o.Keys())
	}
	withKey := rawEvent(`{"req":{"id":"a\"b-1"},"service":"svc"}`, map[string]any{"req": map[string]any{"id": `a"b-1`}, "service": "svc"}, 100)
	without := rawEvent(`{"service":"svc"}`, map[string]any{"service": "svc"}, 200)
	numeric := rawEvent(`{"req":{"id":42},"service":"svc"}`, map[string]any{"req": map[string]any{"id": float64(42)}, "service": "svc"}, 300)
	var batch [][]byte
	for _, e := range eventsOf(withKey, without, numeric) {
		rec, err := o.Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, rec)
	}
	action := func(rec []byte) map[string]map[string]any {
		var a map[string]map[string]any
		if err := json.Unmarshal(rec[:strings.IndexByte(string(rec), '\n')], &a); err != nil {
			t.Fatalf("%s: %v", rec, err)
		}
		return a
	}
	if id := action(batch[0])["index"]["_id"]; id != `a"b-1` {
		t.Errorf("_id %v", id)
	}
	if id, _ := action(batch[1])["index"]["_id"].(string); len(id) != 22 {
		t.Errorf("without the field: _id %q, want the stable source id", id)
	}
	if id := action(batch[2])["index"]["_id"]; id != "42" {
		t.Errorf("numeric: _id %v", id)
	}
	for range 2 {
		if err := o.Write(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := s.Get("app-svc", `a"b-1`); !ok || s.Count("app-svc") != 3 {
		t.Errorf("%d documents, keyed one found %v", s.Count("app-svc"), ok)
	}

	none := serverOutput(t, s, func(c *Config) { c.IDKey = "rid"; c.ID = "none" })
	rec, err := none.Encode(nil, without)
	if err != nil {
		t.Fatal(err)
	}
	if _, has := action(rec)["index"]["_id"]; has {
		t.Errorf("id: none without the field: %s", rec)
	}
}

// TestRouting: routing renders per record into the action line; empty
// renders leave it out.
func TestRouting(t *testing.T) {
	s := estest.New()
	defer s.Close()
	o := serverOutput(t, s, func(c *Config) { c.Routing = "{{ tenant }}" })
	if !contains(o.Keys(), "tenant") {
		t.Errorf("Keys %v", o.Keys())
	}
	var batch [][]byte
	for _, e := range eventsOf(
		rawEvent(`{"tenant":"t-1","service":"svc"}`, map[string]any{"tenant": "t-1", "service": "svc"}, 100),
		rawEvent(`{"service":"svc"}`, map[string]any{"service": "svc"}, 200),
	) {
		rec, err := o.Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, rec)
	}
	if !strings.Contains(string(batch[0]), `"routing":"t-1"`) || strings.Contains(string(batch[1]), "routing") {
		t.Fatalf("action lines:\n%s%s", batch[0], batch[1])
	}
	if err := o.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	routed := 0
	for _, d := range s.Docs("app-svc") {
		if d.Routing == "t-1" {
			routed++
		}
	}
	if routed != 1 || s.Count("app-svc") != 2 {
		t.Errorf("%d routed of %d", routed, s.Count("app-svc"))
	}
}

// TestIDKeyAndRoutingRealNode: on the real OpenSearch node the document is
// stored under the record's id with the rendered routing (GET with that
// routing finds it, _routing is set).
func TestIDKeyAndRoutingRealNode(t *testing.T) {
	n := node{t, testservers.OpenSearch(t)}
	index := testservers.UniqueName(t, "sidelog-idkey")
	n.cleanup("/" + index)
	o := testOutput(t, func(c *Config) {
		c.Endpoints = []string{n.url}
		c.Index = index
		c.IDKey = "request_id"
		c.Routing = "{{ tenant }}"
	}, plugins.OutputEnv{Name: "es"})
	rec, err := o.Encode(nil, rawEvent(`{"request_id":"req-7","tenant":"acme"}`, map[string]any{"request_id": "req-7", "tenant": "acme"}, 100))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := o.Write(t.Context(), [][]byte{rec}); err != nil {
			t.Fatal(err)
		}
	}
	var doc struct {
		ID      string `json:"_id"`
		Routing string `json:"_routing"`
		Found   bool   `json:"found"`
	}
	if err := json.Unmarshal([]byte(n.must("GET", "/"+index+"/_doc/req-7?routing=acme", "")), &doc); err != nil {
		t.Fatal(err)
	}
	if !doc.Found || doc.ID != "req-7" || doc.Routing != "acme" {
		t.Errorf("document %+v", doc)
	}
	if got := n.count(index); got != 1 {
		t.Errorf("%d documents, want 1 (same id twice)", got)
	}
}

func eventsOf(es ...*event.Event) []*event.Event { return es }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestIndexNamesRealNode: the real OpenSearch and Elasticsearch 7.17 nodes
// refuse every name checkIndexName refuses (so a record is dead-lettered
// only where the engine would refuse it), and accept the sanitised forms
// of names with upper case and refused characters.
func TestIndexNamesRealNode(t *testing.T) {
	for _, srv := range []struct {
		name string
		url  func(testing.TB) string
	}{{"opensearch", testservers.OpenSearch}, {"elasticsearch7", testservers.Elasticsearch7}} {
		t.Run(srv.name, func(t *testing.T) {
			n := node{t, srv.url(t)}
			base := testservers.UniqueName(t, "sidelog-names")
			for _, bad := range []string{"-" + base, "_" + base, "+" + base, ".", "..", base + strings.Repeat("x", 256-len(base))} {
				if checkIndexName([]byte(bad)) == nil {
					t.Fatalf("%q: checkIndexName accepts it", bad)
				}
				st, body := n.do("PUT", "/"+bad, "")
				if st != 400 || !strings.Contains(body, "invalid_index_name_exception") {
					n.do("DELETE", "/"+bad, "")
					t.Errorf("%q: the node answered %d %s", bad, st, body)
				}
			}
			// Rendered names with upper case and refused characters are
			// sanitised into names the node takes.
			o := testOutput(t, func(c *Config) { c.Endpoints = []string{n.url}; c.Index = base + "-{{ svc }}" }, plugins.OutputEnv{Name: "es"})
			var batch [][]byte
			for i, svc := range []string{"Checkout API", "a/b*c?d\"e<f>g|h,i#j\\\\k", "Ünïcode"} {
				rec, err := o.Encode(nil, rawEvent(`{}`, map[string]any{"svc": svc}, int64(100+i)))
				if err != nil {
					t.Fatal(err)
				}
				n.cleanup("/" + actionIndex(rec))
				batch = append(batch, rec)
			}
			if err := o.Write(t.Context(), batch); err != nil {
				t.Fatalf("sanitised names refused: %v", err)
			}
			for _, rec := range batch {
				if got := n.count(actionIndex(rec)); got != 1 {
					t.Errorf("%s: %d documents", actionIndex(rec), got)
				}
			}
		})
	}
}
