package modify

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/filter/internal/example"
	pjson "github.com/sidelog/sidelog/parser/json"
	"github.com/sidelog/sidelog/plugins"
)

func reg() *plugins.Registry { return example.Registry(map[string]plugins.Filter{"modify": Plugin}) }

// norm turns YAML-decoded values into what a JSON parser gives (float64
// numbers), so records compare like the pipeline sees them.
func norm(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

func TestExampleCases(t *testing.T) {
	cfg, err := example.ParseFile("example.yaml", reg())
	if err != nil {
		t.Fatal(err)
	}
	chain, err := example.Build(cfg, reg())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("testdata/cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Name    string
		In, Out map[string]any
		Errors  int64
	}
	if err := yaml.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	var errs int64
	for _, c := range cases {
		e := &event.Event{Fields: norm(c.In)}
		if !chain.Apply(e) {
			t.Fatalf("%s: dropped", c.Name)
		}
		errs += c.Errors
		if got := example.Count(chain[0].Filter, "errors"); got != errs {
			t.Fatalf("%s: errors = %d, want %d", c.Name, got, errs)
		}
		// Compare through JSON so that ints and floats compare by value.
		if got, want := norm(e.Fields), norm(c.Out); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n got %v\nwant %v", c.Name, got, want)
		}
		if c.Errors == 0 && c.In["service"] == "checkout" && !e.Has(event.Modified) {
			t.Fatalf("%s: Modified flag not set", c.Name)
		}
		if c.Errors > 0 && e.Has(event.Modified) {
			t.Fatalf("%s: unchanged record marked Modified", c.Name)
		}
	}
}

func TestOperations(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		in   map[string]any
		out  map[string]any
	}{
		{"set literal", Config{Set: map[string]string{"env": `"prod"`}}, map[string]any{}, map[string]any{"env": "prod"}},
		{"set sees record before rename", Config{Set: map[string]string{"m2": `msg + "!"`}, Rename: map[string]string{"msg": "message"}},
			map[string]any{"msg": "hi"}, map[string]any{"message": "hi", "m2": "hi!"}},
		{"set nested replaces scalar", Config{Set: map[string]string{"a.b": `1`}}, map[string]any{"a": "x"}, map[string]any{"a": map[string]any{"b": 1}}},
		{"set meta", Config{Set: map[string]string{"source": `meta.input`}}, map[string]any{}, map[string]any{"source": "app"}},
		{"rename missing is a no-op", Config{Rename: map[string]string{"x": "y"}}, map[string]any{"a": 1}, map[string]any{"a": 1}},
		{"rename nested", Config{Rename: map[string]string{"a.b": "c"}}, map[string]any{"a": map[string]any{"b": 2}}, map[string]any{"a": map[string]any{}, "c": 2}},
		{"copy is deep", Config{Copy: map[string]string{"a": "b"}, Set: map[string]string{"b.x": `2`}},
			map[string]any{"a": map[string]any{"x": 1}}, map[string]any{"a": map[string]any{"x": 1}, "b": map[string]any{"x": 2}}},
		{"remove after set", Config{Set: map[string]string{"t": `1`}, Remove: []string{"t", "u.v"}}, map[string]any{"u": map[string]any{"v": 1, "w": 2}}, map[string]any{"u": map[string]any{"w": 2}}},
		{"has in set", Config{Set: map[string]string{"traced": `has(trace.id)`}}, map[string]any{"trace": map[string]any{"id": "x"}}, map[string]any{"trace": map[string]any{"id": "x"}, "traced": true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := New(&c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			e := &event.Event{Fields: c.in, Input: "app"}
			if !m.Apply(e) {
				t.Fatal("dropped")
			}
			if !reflect.DeepEqual(e.Fields, c.out) {
				t.Fatalf("got %v, want %v", e.Fields, c.out)
			}
		})
	}
}

func TestPartialRecordIsCompletedBeforeChange(t *testing.T) {
	m, err := New(&Config{Set: map[string]string{"b": `a + 1`}})
	if err != nil {
		t.Fatal(err)
	}
	// a is read; b is written (the parser says whether the line has it)
	if keys, all := m.Keys(); all || !reflect.DeepEqual(keys, []string{"a", "b"}) {
		t.Fatalf("Keys = %v %v", keys, all)
	}
	e := &event.Event{Fields: map[string]any{"a": 1.0}}
	e.SetLazy(func(e *event.Event) { e.Fields["other"] = "x" })
	m.Apply(e)
	want := map[string]any{"a": 1.0, "b": 2.0, "other": "x"}
	if !reflect.DeepEqual(e.Fields, want) || e.Partial {
		t.Fatalf("got %v (partial %v)", e.Fields, e.Partial)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"filters:\n  - type: modify\n    set:\n      env: 'level =='\n", "t.yaml:4: filters[0].set.env: line 1, column 8: unexpected token EOF"},
		{"filters:\n  - type: modify\n    set:\n      env: '\"a\" + 1'\n", "t.yaml:4: filters[0].set.env: line 1, column 5: invalid operation"},
		{"filters:\n  - type: modify\n    set:\n      env: 'upper()'\n", "t.yaml:4: filters[0].set.env: line 1, column 1: not enough arguments"},
		{"filters:\n  - type: modify\n    rename: {a: 'b..c'}\n", `filters[0].rename.a: invalid field path "b..c"`},
		{"filters:\n  - type: modify\n", "modify needs at least one of set, rename, remove, copy"},
		{"filters:\n  - type: modify\n    sett: {a: '1'}\n", "t.yaml:3: filters[0].sett"},
	}
	for _, c := range cases {
		_, err := example.Parse("t.yaml", c.yaml, reg())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.yaml, err, c.want)
		}
	}
}

// Issue 20: a key given twice in set, rename or copy is refused with its
// line (YAML would keep the last one and drop the first silently).
func TestDuplicateMapKeysRefused(t *testing.T) {
	_, err := example.Parse("t.yaml", `filters:
  - type: modify
    set: {x: '1', x: '2'}
    rename:
      a: b
      a: c
    copy: {d: e, d: f}
`, reg())
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"t.yaml:3: filters[0].set.x: duplicate key",
		"t.yaml:6: filters[0].rename.a: duplicate key",
		"t.yaml:7: filters[0].copy.d: duplicate key",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}

func BenchmarkModify(b *testing.B) {
	m, err := New(&Config{Set: map[string]string{"env": `"prod"`, "latency_s": `latency_ms / 1000`}, Rename: map[string]string{"msg": "message"}})
	if err != nil {
		b.Fatal(err)
	}
	e := &event.Event{Fields: map[string]any{"latency_ms": 12.0, "msg": "x", "level": "info"}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.Apply(e)
		e.Fields["msg"] = "x"
	}
}

const appLine = `{"ts":"2026-11-25T10:00:00.123Z","level":"info","msg":"request served","service":"checkout","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user_id":12345,"latency_ms":12,"path":"/api/v1/orders","status":200}`

// parsed parses line the way the pipeline does for this filter: the JSON
// parser selects the keys the filter declares.
func parsed(t testing.TB, m *Modify, line string) *event.Event {
	p := pjson.New()
	keys, all := m.Keys()
	p.SelectKeys(keys, all)
	e := &event.Event{Raw: []byte(line), Input: "app"}
	p.Parse(e)
	if !e.Has(event.RawJSON) {
		t.Fatalf("not RawJSON: %v", e.Fields)
	}
	return e
}

func TestTopLevelChangesUseTheOverlay(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"set computed", Config{Set: map[string]string{"latency_s": `latency_ms / 1000`}},
			`{"ts":"2026-11-25T10:00:00.123Z","level":"info","msg":"request served","service":"checkout","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user_id":12345,"latency_ms":12,"path":"/api/v1/orders","status":200,"latency_s":0.012}`},
		{"set existing in place", Config{Set: map[string]string{"level": `upper(level)`}},
			`{"ts":"2026-11-25T10:00:00.123Z","level":"INFO","msg":"request served","service":"checkout","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user_id":12345,"latency_ms":12,"path":"/api/v1/orders","status":200}`},
		{"rename copy remove", Config{Rename: map[string]string{"msg": "message"}, Copy: map[string]string{"service": "svc"}, Remove: []string{"trace_id", "ts", "absent"}},
			`{"level":"info","service":"checkout","user_id":12345,"latency_ms":12,"path":"/api/v1/orders","status":200,"svc":"checkout","message":"request served"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := New(&c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			e := parsed(t, m, appLine)
			m.Apply(e)
			if !e.Partial || e.Has(event.Modified) || !e.HasOverlay() {
				t.Fatalf("record was completed (partial %v, modified %v, overlay %v)", e.Partial, e.Has(event.Modified), e.HasOverlay())
			}
			if got := string(event.AppendJSON(nil, e)); got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

// The overlay path and the map path must give the same record.
func TestOverlayAndMapAgree(t *testing.T) {
	cfgs := []Config{
		{Set: map[string]string{"latency_s": `latency_ms / 1000`, "env": `"prod"`}, Rename: map[string]string{"msg": "message", "nope": "x"}},
		{Copy: map[string]string{"level": "lvl", "service": "level"}, Remove: []string{"lvl", "status"}},
		{Rename: map[string]string{"ts": "msg", "msg": "ts"}},
		{Set: map[string]string{"msg": `msg + "!"`, "status": `status + 1`}, Remove: []string{"msg"}},
		{Set: map[string]string{"http.status": `status`}, Remove: []string{"status"}}, // nested: map path for both
	}
	for i, c := range cfgs {
		m, err := New(&c)
		if err != nil {
			t.Fatal(err)
		}
		over := parsed(t, m, appLine)
		m.Apply(over)
		plain := parsed(t, m, appLine)
		plain.Mutable() // no overlay from now on: the map is the record
		m.Apply(plain)
		got, want := string(event.AppendJSON(nil, over)), string(event.AppendJSON(nil, plain))
		var a, b map[string]any
		if err := json.Unmarshal([]byte(got), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(want), &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("config %d:\noverlay %s\nmap     %s", i, got, want)
		}
		if full := norm(over.Full()); !reflect.DeepEqual(full, b) {
			t.Errorf("config %d: completed Fields %v, want %v", i, full, b)
		}
	}
}

func TestFailedSetLeavesRawRecord(t *testing.T) {
	// one set (its values on the stack), six (from the pool)
	for _, set := range []map[string]string{
		{"x": `latency_ms / 1000`},
		{"a": `1`, "b": `"b"`, "c": `latency_ms`, "d": `2.5`, "e": `true`, "x": `latency_ms / 1000`},
	} {
		m, err := New(&Config{Set: set, Remove: []string{"msg"}})
		if err != nil {
			t.Fatal(err)
		}
		line := `{"latency_ms":"slow","msg":"m"}`
		for range 2 {
			e := parsed(t, m, line)
			m.Apply(e)
			if e.HasOverlay() || e.Has(event.Modified) {
				t.Fatal("a failed set changed the record")
			}
			if got := string(event.AppendJSON(nil, e)); got != line {
				t.Fatalf("got %s", got)
			}
		}
		if got := example.Count(m, "errors"); got != 2 {
			t.Fatalf("%d sets: errors = %d, want 2", len(set), got)
		}
		e := parsed(t, m, `{"latency_ms":250,"msg":"m"}`)
		m.Apply(e)
		want := `{"latency_ms":250,"x":0.25}`
		if len(set) > 1 {
			want = `{"latency_ms":250,"a":1,"b":"b","c":250,"d":2.5,"e":true,"x":0.25}`
		}
		if got := string(event.AppendJSON(nil, e)); got != want {
			t.Fatalf("%d sets: got %s, want %s", len(set), got, want)
		}
	}
}

// BenchmarkModifyOverlay is scenario 2's modify on a parsed line: set a
// computed field, then write the record (as an output does).
func BenchmarkModifyOverlay(b *testing.B) {
	for _, mode := range []string{"overlay", "map"} {
		b.Run(mode, func(b *testing.B) {
			m, err := New(&Config{Set: map[string]string{"latency_s": `latency_ms / 1000`}})
			if err != nil {
				b.Fatal(err)
			}
			p := pjson.New()
			keys, _ := m.Keys()
			p.SelectKeys(append(keys, "level"), false)
			raw := []byte(appLine)
			var buf []byte
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				e := event.Event{Raw: raw}
				p.Parse(&e)
				if mode == "map" {
					e.Mutable()
				}
				m.Apply(&e)
				buf = event.AppendJSON(buf[:0], &e)
			}
		})
	}
}

// Issue 20 item 1: `set: {x: '$env'}` stored the record into itself and the
// encoder recursed until a fatal stack overflow, on every restart. Validate
// now refuses every form that returns the record as a value.
func TestSetEnvRefusedAtValidate(t *testing.T) {
	for _, src := range []string{`$env`, `[$env]`, `{"r": $env}`, `level == "x" ? $env : nil`, `let r = $env; r`, `nothing ?? $env`} {
		_, err := New(&Config{Set: map[string]string{"x": src}})
		if err == nil || !strings.Contains(err.Error(), "set.x") || !strings.Contains(err.Error(), "toJSON($env)") {
			t.Errorf("%s: err = %v", src, err)
		}
	}
	for _, src := range []string{`$env.level`, `$env["level"]`, `toJSON($env)`, `len($env)`, `"level" in $env`} {
		if _, err := New(&Config{Set: map[string]string{"x": src}}); err != nil {
			t.Errorf("%s refused: %v", src, err)
		}
	}
}

// What validate cannot see (a value built at run time from the record, or
// a nested target whose parent is the value) is stored as a copy, so the
// record never holds itself and encodes in full.
func TestSetStoresCopyNeverCycle(t *testing.T) {
	for _, set := range []map[string]string{
		{"x": `filter([$env], true)`},
		{"a.b": `a`},
		{"x": `values($env)`},
	} {
		m, err := New(&Config{Set: set})
		if err != nil {
			t.Fatal(err)
		}
		e := &event.Event{Fields: map[string]any{"a": map[string]any{"k": "v"}, "n": 1.0}}
		m.Apply(e)
		if err := event.CheckDepth(e.Fields); err != nil {
			t.Fatalf("%v: record holds itself: %v", set, err)
		}
		out := event.AppendJSON(nil, e)
		if !json.Valid(out) || strings.Contains(string(out), event.DepthExceeded) {
			t.Fatalf("%v: %s", set, out)
		}
		if example.Count(m, "errors") != 0 {
			t.Fatalf("%v: errors", set)
		}
	}
	// A value deeper than the limit is a per-record error: record unchanged.
	m, err := New(&Config{Set: map[string]string{"x": `deep`}})
	if err != nil {
		t.Fatal(err)
	}
	var deep any = "leaf"
	for range event.MaxDepth + 1 {
		deep = []any{deep}
	}
	e := &event.Event{Fields: map[string]any{"deep": deep}}
	m.Apply(e)
	if _, set := e.Fields["x"]; set || example.Count(m, "errors") != 1 {
		t.Fatalf("x set %v, errors %d", set, example.Count(m, "errors"))
	}
}
