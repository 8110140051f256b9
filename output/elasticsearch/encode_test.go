package elasticsearch

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/plugins"
)

var t0 = time.Date(2024, 2, 29, 23, 4, 5, 123456789, time.UTC)

func testOutput(t testing.TB, mod func(c *Config), env plugins.OutputEnv) *Output {
	t.Helper()
	c := NewConfig()
	c.Endpoints = []string{"http://127.0.0.1:1"}
	if mod != nil {
		mod(c)
	}
	if env.InstanceID == "" {
		env.InstanceID = "instance-1"
	}
	if env.Hostname == "" {
		env.Hostname = "node-a"
	}
	o, err := New(c, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close(t.Context()) })
	return o
}

// rawEvent is a JSON line as the json parser leaves it: Raw verbatim.
func rawEvent(raw string, fields map[string]any, off int64) *event.Event {
	return &event.Event{Raw: []byte(raw), Fields: fields, Time: t0, Flags: event.RawJSON,
		Pos: event.Position{FileID: event.FileID{Dev: 1, Ino: 42, Fingerprint: 7}, Offset: off}}
}

// split returns the action and the document of an encoded record, checking
// the framing: exactly two lines, each ending in '\n'.
func split(t *testing.T, rec []byte) (action map[string]map[string]string, doc map[string]any, docLine string) {
	t.Helper()
	if len(rec) == 0 || rec[len(rec)-1] != '\n' || bytes.Count(rec, []byte{'\n'}) != 2 {
		t.Fatalf("record is not two lines: %q", rec)
	}
	lines := bytes.SplitN(rec, []byte{'\n'}, 3)
	if err := json.Unmarshal(lines[0], &action); err != nil {
		t.Fatalf("action %q: %v", lines[0], err)
	}
	if err := json.Unmarshal(lines[1], &doc); err != nil {
		t.Fatalf("doc %q: %v", lines[1], err)
	}
	return action, doc, string(lines[1])
}

func TestEncodeBulk(t *testing.T) {
	o := testOutput(t, func(c *Config) { c.Index = "app-{{ service }}-%Y.%m.%d"; c.Pipeline = "geo" }, plugins.OutputEnv{})
	e := rawEvent(`{"service":"checkout","msg":"hi"}`, map[string]any{"service": "checkout", "msg": "hi"}, 100)
	rec, err := o.Encode([]byte("keep"), e)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(rec, []byte("keep")) {
		t.Fatal("Encode must append to dst")
	}
	action, doc, line := split(t, rec[4:])
	a := action["index"]
	if a == nil || a["_index"] != "app-checkout-2024.02.29" || a["pipeline"] != "geo" || len(a["_id"]) != 22 {
		t.Fatalf("action %v", action)
	}
	// @timestamp spliced first, the raw line kept byte for byte after it.
	if line != `{"@timestamp":"2024-02-29T23:04:05.123456789Z","service":"checkout","msg":"hi"}` {
		t.Fatalf("doc line %s", line)
	}
	if doc["service"] != "checkout" {
		t.Fatal(doc)
	}
}

func TestEncodeDataStream(t *testing.T) {
	o := testOutput(t, func(c *Config) {
		c.Mode = "data_stream"
		c.Index = "logs-{{ kubernetes.namespace }}-default"
		c.ID = "none"
	}, plugins.OutputEnv{})
	e := &event.Event{Fields: map[string]any{"kubernetes": map[string]any{"namespace": "Shop"}, "n": 1}, Time: t0, Flags: event.Modified}
	rec, err := o.Encode(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	action, _, line := split(t, rec)
	a := action["create"]
	if a == nil || a["_index"] != "logs-shop-default" {
		t.Fatalf("action %v (upper case must be lowered)", action)
	}
	if _, has := a["_id"]; has {
		t.Fatal("id: none must not send an _id")
	}
	if line != `{"@timestamp":"2024-02-29T23:04:05.123456789Z","kubernetes":{"namespace":"Shop"},"n":1}` {
		t.Fatalf("doc line %s", line)
	}
}

func TestEncodeTimestamp(t *testing.T) {
	o := testOutput(t, nil, plugins.OutputEnv{})
	cases := []struct {
		name string
		e    *event.Event
		want string
	}{
		{"own @timestamp kept", rawEvent(`{"@timestamp":"2020-01-01T00:00:00Z","a":1}`, map[string]any{"@timestamp": "2020-01-01T00:00:00Z", "a": 1.0}, 5),
			`{"@timestamp":"2020-01-01T00:00:00Z","a":1}`},
		{"partial fields, raw has it", func() *event.Event {
			e := rawEvent(`{"a":1,"@timestamp":"x"}`, map[string]any{}, 5)
			// As the json parser leaves a record whose selection missed
			// the key: completed on demand.
			e.SetLazy(func(e *event.Event) { e.Fields["a"], e.Fields["@timestamp"] = 1.0, "x" })
			return e
		}(), `{"a":1,"@timestamp":"x"}`},
		{"empty object", rawEvent(`{}`, map[string]any{}, 5), `{"@timestamp":"2024-02-29T23:04:05.123456789Z"}`},
		{"spaces before brace", rawEvent(`  { "a" : 1 }`, map[string]any{"a": 1.0}, 5), `  {"@timestamp":"2024-02-29T23:04:05.123456789Z", "a" : 1 }`},
		{"pretty printed joined lines", rawEvent("{\n  \"a\": 1,\n  \"b\": \"x\\ny\"\n}", map[string]any{"a": 1.0, "b": "x\ny"}, 5),
			`{"@timestamp":"2024-02-29T23:04:05.123456789Z",   "a": 1,   "b": "x\ny" }`},
		{"unparsed line", &event.Event{Raw: []byte("plain text"), Time: t0, Pos: event.Position{Offset: 11}},
			`{"@timestamp":"2024-02-29T23:04:05.123456789Z","message":"plain text"}`},
		{"modified raw is re-serialised", &event.Event{Raw: []byte(`{"a":1}`), Fields: map[string]any{"a": 2}, Flags: event.RawJSON | event.Modified, Time: t0},
			`{"@timestamp":"2024-02-29T23:04:05.123456789Z","a":2}`},
	}
	for _, c := range cases {
		rec, err := o.Encode(nil, c.e)
		if err != nil {
			t.Fatal(err)
		}
		_, _, line := split(t, rec)
		if line != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, line, c.want)
		}
	}
}

func TestDocumentIDs(t *testing.T) {
	a := testOutput(t, nil, plugins.OutputEnv{InstanceID: "i-1", Hostname: "h"})
	b := testOutput(t, nil, plugins.OutputEnv{InstanceID: "i-2", Hostname: "h"})
	c := testOutput(t, nil, plugins.OutputEnv{InstanceID: "i-1", Hostname: "other"})
	id := func(o *Output, e *event.Event) string {
		rec, err := o.Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		act, _, _ := split(t, rec)
		return act["index"]["_id"]
	}
	line := `{"msg":"same text"}`
	e1 := rawEvent(line, map[string]any{"msg": "same text"}, 20)
	e2 := rawEvent(line, map[string]any{"msg": "same text"}, 40) // the same line again, further on
	if id(a, e1) != id(a, e1) {
		t.Fatal("not stable")
	}
	again := testOutput(t, nil, plugins.OutputEnv{InstanceID: "i-1", Hostname: "h"}) // after a restart
	if id(a, e1) != id(again, e1) {
		t.Fatal("not stable across restarts")
	}
	ids := map[string]string{}
	add := func(what, v string) {
		if prev, dup := ids[v]; dup {
			t.Fatalf("%s and %s share the id %s", what, prev, v)
		}
		ids[v] = what
	}
	add("line 1", id(a, e1))
	add("identical line 2", id(a, e2))
	add("other instance", id(b, e1))
	add("other host", id(c, e1))
	gen := rawEvent(line, nil, 20)
	gen.Pos.Generation = 1
	add("after truncation", id(a, gen))
	other := rawEvent(line, nil, 20)
	other.Pos.FileID.Ino = 43
	add("other file", id(a, other))
	fp := rawEvent(line, nil, 20)
	fp.Pos.FileID.Fingerprint = 8
	add("reused inode", id(a, fp))

	// No source position: no id (Elasticsearch assigns one) rather than a
	// shared one.
	if got := id(a, &event.Event{Raw: []byte(`{}`), Fields: map[string]any{}, Flags: event.RawJSON, Time: t0}); got != "" {
		t.Fatalf("an event without position got id %q", got)
	}
}

func TestIndexSanitised(t *testing.T) {
	o := testOutput(t, func(c *Config) { c.Index = "app-{{ service }}" }, plugins.OutputEnv{})
	e := rawEvent(`{}`, map[string]any{"service": "My Svc/\"x\"\\\x01\xff*é"}, 3)
	rec, err := o.Encode(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	act, _, _ := split(t, rec)
	if got := act["index"]["_index"]; got != "app-my_svc__x_____é" {
		t.Fatalf("index %q", got)
	}
	if !strings.HasPrefix(string(rec), `{"index":{"_index":"app-my_svc__x_____é"`) {
		t.Fatalf("raw action %q", rec)
	}
}

func TestEncodeEmptyIndex(t *testing.T) {
	o := testOutput(t, func(c *Config) { c.Index = "{{ service }}" }, plugins.OutputEnv{})
	dst := []byte("prev")
	out, err := o.Encode(dst, rawEvent(`{}`, map[string]any{}, 3))
	if err == nil || string(out) != "prev" {
		t.Fatalf("err %v, out %q", err, out)
	}
}

func TestKeys(t *testing.T) {
	o := testOutput(t, func(c *Config) { c.Index = "app-{{ service }}-{{ k8s.ns }}" }, plugins.OutputEnv{})
	if got := strings.Join(o.Keys(), ","); got != "k8s,k8s.ns,service,@timestamp" {
		t.Fatal(got)
	}
	if o.DefaultBuffer() != "disk" {
		t.Fatal(o.DefaultBuffer())
	}
}

func BenchmarkEncode(b *testing.B) {
	o := testOutput(b, func(c *Config) { c.Index = "app-{{ service }}-%Y.%m.%d" }, plugins.OutputEnv{})
	raw := `{"ts":"2024-02-29T23:04:05.123Z","level":"info","service":"checkout","msg":"request served","path":"/api/v1/orders/12345","status":200,"latency_ms":12.5,"user":"u-000123","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`
	e := rawEvent(raw, map[string]any{"service": "checkout"}, 100)
	e.Partial = true
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		e.Pos.Offset++
		var err error
		if buf, err = o.Encode(buf[:0], e); err != nil {
			b.Fatal(err)
		}
	}
}

func TestQuotedTimestamp(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want bool
	}{
		{`{"@timestamp":"x"}`, true},
		{`{"a":1,"@timestamp":2}`, true},
		{`{"a":"@timestamp"}`, true}, // a value: Field then says no
		{`{"a":"x@timestamp"}`, false},
		{`{"a":"@timestamp`, false},
		{`@timestamp"`, false},
		{`"@timestamp"`, true},
		{`{"x@timestamp":1,"@timestamp":2}`, true},
		{`{}`, false},
		{``, false},
	} {
		if got := quotedTimestamp([]byte(c.raw)); got != c.want {
			t.Errorf("%s: %v, want %v", c.raw, got, c.want)
		}
		if got := strings.Contains(c.raw, `"@timestamp"`); got != c.want {
			t.Errorf("%s: the test's own expectation differs from strings.Contains", c.raw)
		}
	}
}

// sanitizeIndex: upper case lowered, control characters and the characters
// Elasticsearch refuses replaced by '_', other bytes kept, every ASCII byte.
func TestSanitizeIndexEveryASCIIByte(t *testing.T) {
	for c := 0; c < 0x80; c++ {
		b := []byte{'a', byte(c), 'z'}
		sanitizeIndex(b)
		want := byte(c)
		switch {
		case c >= 'A' && c <= 'Z':
			want = byte(c) + 'a' - 'A'
		case c < 0x20 || c == 0x7f || strings.ContainsRune(`\/*?"<>| ,#:`, rune(c)):
			want = '_'
		}
		if b[0] != 'a' || b[1] != want || b[2] != 'z' {
			t.Errorf("byte %#x: %q, want %q", c, b, []byte{'a', want, 'z'})
		}
	}
	b := []byte("App-Ünïcode \xff/x")
	sanitizeIndex(b)
	if got, want := string(b), "app-Ünïcode___x"; got != want {
		t.Errorf("mixed: %q, want %q", got, want)
	}
}
