package expression

import (
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
)

func ev(fields map[string]any) *event.Event {
	return &event.Event{
		Fields: fields,
		Input:  "app",
		Path:   "/var/log/app/a.log",
		Time:   time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
	}
}

func TestCompileErrorsHaveLineAndColumn(t *testing.T) {
	cases := []struct {
		name, src  string
		kind       Kind
		line, col  int
		msgContain string
	}{
		{"syntax", `level ==`, Bool, 1, 8, "unexpected token EOF"},
		{"type between literals", `"a" + 1 > 2`, Bool, 1, 5, "mismatched types string and int"},
		{"wrong call", `lower()`, Bool, 1, 1, "not enough arguments"},
		{"unknown function", `level == "x" || lowr(msg) == "y"`, Bool, 1, 17, "unknown function lowr"},
		{"second line", "level == \"x\" &&\n  msg ==", Bool, 2, 8, "unexpected token EOF"},
		{"not bool", `1 + 2`, Bool, 1, 1, "expected bool"},
		{"bad regex", `msg matches "("`, Bool, 1, 5, "missing closing )"},
		{"meta field", `meta.host == "a"`, Bool, 1, 6, "no field host"},
		{"has without field", `has(1)`, Bool, 1, 5, "has takes a field name"},
		{"has two args", `has(a, b)`, Bool, 1, 1, "has takes one field"},
		{"has meta", `has(meta.host)`, Bool, 1, 10, "meta has no field host"},
		{"capture bad pattern", `capture(msg, "(") == ""`, Bool, 1, 14, "missing closing )"},
		{"capture dynamic pattern", `capture(msg, pat) == ""`, Bool, 1, 14, "string constant"},
		{"calling a field", `level()`, Any, 1, 1, "unknown function level"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.src, c.kind)
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("Compile(%q) = %v, want *CompileError", c.src, err)
			}
			if ce.Line != c.line || ce.Column != c.col || !strings.Contains(ce.Msg, c.msgContain) {
				t.Fatalf("Compile(%q) = %q (line %d col %d), want line %d col %d containing %q",
					c.src, ce.Msg, ce.Line, ce.Column, c.line, c.col, c.msgContain)
			}
			if !strings.HasPrefix(ce.Error(), "line ") {
				t.Fatalf("Error() = %q", ce.Error())
			}
		})
	}
}

func TestPossiblyWrongCompilesAndFailsAtRunTime(t *testing.T) {
	p, err := Compile(`latency_ms + "x"`, Any)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	if _, err := p.Eval(ev(map[string]any{"latency_ms": 3.0})); err == nil {
		t.Fatal("want a run-time error")
	}
	b, err := MustCompile(`latency_ms / 1000 > 1`, Bool).Bool(ev(map[string]any{}))
	if err == nil || b {
		t.Fatalf("missing field in arithmetic: got %v, %v; want false and an error", b, err)
	}
}

func TestEval(t *testing.T) {
	fields := map[string]any{
		"level":   "DEBUG",
		"msg":     "user=alice logged in",
		"n":       3.0,
		"nested":  map[string]any{"a": map[string]any{"b": nil}},
		"payload": `{"k":[1,2]}`,
	}
	cases := []struct {
		src  string
		want any
	}{
		{`level == "DEBUG"`, true},
		{`lower(level) == "debug"`, true},
		{`upper("a")`, "A"},
		{`meta.input`, "app"},
		{`meta.path`, "/var/log/app/a.log"},
		{`meta.time.Year()`, 2024},
		{`now() > meta.time`, true},
		{`has(level)`, true},
		{`has(missing)`, false},
		{`has(nested.a.b)`, true},
		{`has(nested.a.c)`, false},
		{`has(nested.a.b.c)`, false},
		{`has("nested.a")`, true},
		{`has($env.level)`, true},
		{`has(meta.path)`, true},
		{`not has(level.x)`, true},
		{`msg matches "^user=\\w+"`, true},
		{`capture(msg, "user=(\\w+)")`, "alice"},
		{`capture(msg, "logged")`, "logged"},
		{`capture(msg, "nobody=(\\w+)")`, ""},
		{`capture(missing, "x")`, ""},
		{`toJSON(nested)`, `{"a":{"b":null}}`},
		{`fromJSON(payload).k[1]`, 2.0},
		{`string(n)`, "3"},
		{`int("42") + 1`, 43},
		{`n * 2`, 6.0},
		{`missing == nil`, true},
		{`missing?.x == nil`, true},
		{`"level" in $env`, true},
		{`$env["msg"] contains "alice"`, true},
		{`let lvl = lower(level); lvl == "debug"`, true},
	}
	for _, c := range cases {
		t.Run(c.src, func(t *testing.T) {
			p, err := Compile(c.src, Any)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			got, err := p.Eval(ev(fields))
			if err != nil {
				t.Fatalf("eval: %v", err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %#v, want %#v", got, c.want)
			}
		})
	}
	if _, ok := fields[MetaKey]; ok {
		t.Fatal("meta left in the record's fields")
	}
}

func TestEvalRestoresRecordMetaField(t *testing.T) {
	fields := map[string]any{"meta": "mine"}
	got, err := MustCompile(`meta.input`, Any).Eval(ev(fields))
	if err != nil || got != "app" {
		t.Fatalf("got %v, %v", got, err)
	}
	if fields["meta"] != "mine" {
		t.Fatalf("record's meta field = %v, want it restored", fields["meta"])
	}
	m, err := MustCompile(`meta`, Any).Eval(ev(map[string]any{}))
	if err != nil {
		t.Fatal(err)
	}
	if mm, ok := m.(*event.Meta); !ok || mm.Input != "app" {
		t.Fatalf("meta value = %#v", m)
	}
	// The returned meta must not be the pooled one, overwritten by the next run.
	MustCompile(`meta`, Any).Eval(&event.Event{Input: "other"})
	if m.(*event.Meta).Input != "app" {
		t.Fatal("returned meta aliases pooled state")
	}
}

func TestKeys(t *testing.T) {
	cases := []struct {
		src  string
		keys []string
		all  bool
		meta bool
	}{
		{`level == "debug"`, []string{"level"}, false, false},
		{`lower(level) == "x" && http.status >= 500`, []string{"http", "level"}, false, false},
		{`meta.input == "app"`, nil, false, true},
		{`has(trace_id) || has("span.id")`, []string{"span", "trace_id"}, false, false},
		{`$env.level == "x"`, []string{"level"}, false, false},
		{`"user" in $env`, []string{"user"}, false, false},
		{`len($env) > 3`, nil, true, true},
		{`let x = a + 1; x > 2`, []string{"a"}, false, false},
		{`all(items, .ok)`, []string{"items"}, false, false},
		{`capture(msg, "x") != ""`, []string{"msg"}, false, false},
	}
	for _, c := range cases {
		p, err := Compile(c.src, Bool)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		keys, all := p.Keys()
		if !reflect.DeepEqual(keys, c.keys) || all != c.all || p.UsesMeta() != c.meta {
			t.Errorf("%s: keys %v all %v meta %v; want %v %v %v", c.src, keys, all, p.UsesMeta(), c.keys, c.all, c.meta)
		}
	}
}

func TestBool(t *testing.T) {
	p := MustCompile(`level == "x"`, Bool)
	if ok, err := p.Bool(ev(map[string]any{"level": "x"})); !ok || err != nil {
		t.Fatalf("got %v %v", ok, err)
	}
	if ok, err := p.Bool(ev(nil)); ok || err != nil {
		t.Fatalf("nil fields: got %v %v", ok, err)
	}
	// A bare field passes the bool check at compile time (its type is
	// unknown) but must be a bool at run time.
	q := MustCompile(`flag`, Bool)
	if _, err := q.Bool(ev(map[string]any{"flag": "yes"})); err == nil {
		t.Fatal("want an error for a non-bool result")
	}
}

func TestConcurrentEval(t *testing.T) {
	p := MustCompile(`meta.input == "app" && n > 1`, Bool)
	done := make(chan bool)
	for g := 0; g < 4; g++ {
		go func() {
			ok := true
			for i := 0; i < 2000; i++ {
				b, err := p.Bool(ev(map[string]any{"n": float64(i % 3)}))
				ok = ok && err == nil && b == (i%3 == 2)
			}
			done <- ok
		}()
	}
	for g := 0; g < 4; g++ {
		if !<-done {
			t.Fatal("wrong result under concurrency")
		}
	}
}

// Issue 20: a field named like an expr builtin is the field when written
// bare, in any expression; called, the name is still the function.
func TestFieldsNamedLikeBuiltins(t *testing.T) {
	fields := map[string]any{"duration": 10.0, "type": "x", "date": "2026-12-02", "now": "n", "count": 3.0, "max": 4.0, "len": 1.0, "toJSON": "j"}
	for src, want := range map[string]any{
		`duration > 5`:                     true,
		`type == "x"`:                      true,
		`max + 1`:                          5.0,
		`count * 2`:                        6.0,
		`date + "T"`:                       "2026-12-02T",
		`now`:                              "n",
		`len + len("ab")`:                  3.0,
		`toJSON == "j"`:                    true,
		`duration("1s") > duration("1ms")`: true,
		`has(type) && type != ""`:          true,
	} {
		p, err := Compile(src, Any)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		got, err := p.Eval(&event.Event{Fields: maps.Clone(fields)})
		if err != nil || got != want {
			t.Errorf("%s = %v (%T), %v; want %v", src, got, got, err, want)
		}
	}
	p := MustCompile(`duration > 5 && type == "x"`, Bool)
	if keys, all := p.Keys(); all || strings.Join(keys, ",") != "duration,type" {
		t.Fatalf("keys %v all %v", keys, all)
	}
}

// A record whose fields the event keeps without a map (event.AddField, the
// JSON parser's selected keys) is evaluated without building one, gives the
// same answers as with a map, and is left as it was; an expression that
// returns the record's map gets the record's own map.
func TestEvalFieldsKeptWithoutMap(t *testing.T) {
	kept := func() *event.Event {
		e := ev(nil)
		e.AddField("level", "warn")
		e.AddField("meta", "mine")
		e.AddField("n", int64(300))
		return e
	}
	cases := []struct {
		src  string
		want any
	}{
		{`level + "!"`, "warn!"},
		{`n + 1`, 301},
		{`meta.input + "/" + level`, "app/warn"},
		{`has(level) && !has(absent)`, true},
		{`level in ["warn", "error"] ? n : 0`, int64(300)},
	}
	for _, c := range cases {
		p := MustCompile(c.src, Any)
		for range 2 { // the second run reuses the pooled state's map
			e := kept()
			got, err := p.Eval(e)
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("%s: %#v, %v; want %#v", c.src, got, err, c.want)
			}
			withMap, _ := p.Eval(ev(map[string]any{"level": "warn", "meta": "mine", "n": int64(300)}))
			if !reflect.DeepEqual(withMap, got) {
				t.Fatalf("%s: %#v with the fields kept, %#v with a map", c.src, got, withMap)
			}
			if e.Fields != nil {
				t.Fatalf("%s: a map was built: %v", c.src, e.Fields)
			}
			if v, _ := e.Known("meta"); v != "mine" {
				t.Fatalf("%s: the record's meta field is %v", c.src, v)
			}
			if _, ok := e.Known("absent"); ok {
				t.Fatalf("%s: the evaluation left a field", c.src)
			}
		}
	}
	e := kept()
	got, err := MustCompile(`$env`, Any).Eval(e)
	m, ok := got.(map[string]any)
	if err != nil || !ok || m["level"] != "warn" || m["n"] != int64(300) {
		t.Fatalf("$env: %#v, %v", got, err)
	}
	m["x"] = 1
	if e.Fields["x"] != 1 {
		t.Fatal("$env is not the record's own map")
	}
}
