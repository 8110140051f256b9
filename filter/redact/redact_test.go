package redact

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/filter/internal/example"
	"github.com/sidelog/sidelog/plugins"
)

func reg() *plugins.Registry { return example.Registry(map[string]plugins.Filter{"redact": Plugin}) }

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
	}
	if err := yaml.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		in := norm(c.In)
		e := &event.Event{Fields: in, Flags: event.RawJSON}
		chain.Apply(e)
		if !reflect.DeepEqual(e.Fields, norm(c.Out)) {
			t.Errorf("%s:\n got %v\nwant %v", c.Name, e.Fields, norm(c.Out))
		}
		changed := !reflect.DeepEqual(norm(c.In), norm(c.Out))
		if e.Has(event.Modified) != changed {
			t.Errorf("%s: Modified = %v, want %v", c.Name, e.Has(event.Modified), changed)
		}
	}
}

func TestBuiltins(t *testing.T) {
	cases := []struct {
		builtin, in, out string
	}{
		{"credit_card", "visa 4111111111111111.", "visa X."},
		{"credit_card", "amex 3782-822463-10005 and mc 5105 1051 0510 5100", "amex X and mc X"},
		{"credit_card", "ts 1714567890123 id 123456789012345678", "ts 1714567890123 id 123456789012345678"},
		{"credit_card", "short 4111", "short 4111"},
		{"email", "from a.b+c@mail.example.co.uk to x@y.io", "from X to X"},
		{"email", "not an email: a@b, @home", "not an email: a@b, @home"},
		{"bearer_token", "Authorization: Bearer abc.DEF-123_~+/=", "Authorization: Bearer X"},
		{"bearer_token", "authorization: bearer tok1 and BEARER tok2", "authorization: bearer X and BEARER X"},
		{"bearer_token", "Basic dXNlcjpwYXNz", "Basic dXNlcjpwYXNz"},
	}
	for _, c := range cases {
		r, err := New(&Config{Fields: []string{"m"}, Builtin: []string{c.builtin}, Replacement: "X"})
		if err != nil {
			t.Fatal(err)
		}
		e := &event.Event{Fields: map[string]any{"m": c.in}}
		r.Apply(e)
		if got := e.Fields["m"]; got != c.out {
			t.Errorf("%s(%q) = %q, want %q", c.builtin, c.in, got, c.out)
		}
	}
}

func TestFailsClosed(t *testing.T) {
	// A `when` that fails at run time redacts the whole fields.
	cfg, err := example.Parse("t.yaml", `filters: [{type: redact, when: 'latency_ms > 1', fields: [message, body], builtin: [email]}]`, reg())
	if err != nil {
		t.Fatal(err)
	}
	chain, err := example.Build(cfg, reg())
	if err != nil {
		t.Fatal(err)
	}
	e := &event.Event{Fields: map[string]any{"latency_ms": "slow", "message": "secret stuff", "other": "x"}}
	if !chain.Apply(e) {
		t.Fatal("dropped")
	}
	want := map[string]any{"latency_ms": "slow", "message": DefaultReplacement, "other": "x"}
	if !reflect.DeepEqual(e.Fields, want) || !e.Has(event.Modified) {
		t.Fatalf("got %v", e.Fields)
	}
	if got := example.Count(chain[0].Filter, "errors"); got != 1 {
		t.Fatalf("errors = %d", got)
	}
	// when false: untouched.
	e = &event.Event{Fields: map[string]any{"latency_ms": 0.0, "message": "a@b.com"}}
	chain.Apply(e)
	if e.Fields["message"] != "a@b.com" {
		t.Fatalf("when false but redacted: %v", e.Fields)
	}
	// A value it cannot inspect is replaced whole.
	r, _ := New(&Config{Fields: []string{"message"}, Builtin: []string{"email"}, Replacement: "X"})
	e = &event.Event{Fields: map[string]any{"message": map[string]any{"a": []byte("a@b.com")}}}
	r.Apply(e)
	if e.Fields["message"] != "X" || example.Count(r, "errors") != 1 {
		t.Fatalf("got %v, errors %d", e.Fields, example.Count(r, "errors"))
	}
	// Times are inspected through their text and kept.
	now := time.Now()
	e = &event.Event{Fields: map[string]any{"message": now}}
	r.Apply(e)
	if e.Fields["message"] != now {
		t.Fatalf("time replaced: %v", e.Fields)
	}
}

func TestPartialRecordCompleted(t *testing.T) {
	r, _ := New(&Config{Fields: []string{"message"}, Builtin: []string{"email"}, Replacement: "X"})
	e := &event.Event{Fields: map[string]any{}}
	e.SetLazy(func(e *event.Event) { e.Fields["message"] = "to a@b.com" })
	r.Apply(e)
	if e.Fields["message"] != "to X" {
		t.Fatalf("partial record not completed before redaction: %v", e.Fields)
	}
	if keys, all := r.Keys(); all || !reflect.DeepEqual(keys, []string{"message"}) {
		t.Fatalf("Keys = %v %v", keys, all)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"filters:\n  - type: redact\n    fields: [message]\n    patterns: ['(']\n", "filters[0].patterns[0]: error parsing regexp"},
		{"filters:\n  - type: redact\n    fields: [message]\n    builtin: [ssn]\n", `filters[0].builtin[0]: unknown built-in pattern "ssn"`},
		{"filters:\n  - type: redact\n    builtin: [email]\n", "filters[0].fields: list the fields"},
		{"filters:\n  - type: redact\n    fields: [message]\n", "redact needs patterns or builtin patterns"},
	}
	for _, c := range cases {
		_, err := example.Parse("t.yaml", c.yaml, reg())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.yaml, err, c.want)
		}
	}
}

func BenchmarkRedactBuiltinsNoMatch(b *testing.B) {
	r, _ := New(&Config{Fields: []string{"message"}, Builtin: []string{"credit_card", "email", "bearer_token"}, Replacement: "X"})
	e := &event.Event{Fields: map[string]any{"message": "GET /api/cart 200 12ms user=42 region=eu-west-1"}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.Apply(e)
	}
}

// Issue 20 item 1: a cyclic or too deep field value is replaced whole (fail
// closed, one error counted) instead of recursing until the stack overflows.
func TestCyclicValueFailsClosed(t *testing.T) {
	r, err := New(&Config{Fields: []string{"body"}, Builtin: []string{"email"}, Replacement: "X"})
	if err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"to": "a@b.com"}
	body["self"] = body
	e := &event.Event{Fields: map[string]any{"body": body}}
	r.Apply(e)
	if e.Fields["body"] != "X" || example.Count(r, "errors") != 1 {
		t.Fatalf("got %T, errors %d", e.Fields["body"], example.Count(r, "errors"))
	}
}
