package template

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
)

func ev(fields map[string]any, t time.Time) *event.Event {
	return &event.Event{Fields: fields, Time: t}
}

func TestRender(t *testing.T) {
	// 2024-02-29T23:04:05.123Z in UTC, expressed in another zone so that the
	// UTC conversion is exercised.
	tz := time.FixedZone("X", 5*3600)
	when := time.Date(2024, 3, 1, 4, 4, 5, 123e6, tz)
	fields := map[string]any{
		"service":              "checkout",
		"kubernetes":           map[string]any{"namespace": "shop", "labels": map[string]any{"app": "web"}},
		"flat.key":             "flat",
		"n":                    float64(42),
		"f":                    1.5,
		"big":                  int64(1 << 40),
		"ok":                   true,
		"empty":                "",
		"nothing":              nil,
		"obj":                  map[string]any{"a": 1},
		"num":                  json.Number("12.50"),
		"kubernetes.namespace": "shadowed",
	}
	cases := []struct{ src, want string }{
		{"app-{{ service }}-%Y.%m.%d", "app-checkout-2024.02.29"},
		{"logs-{{ kubernetes.namespace }}-default", "logs-shop-default"},
		{"{{kubernetes.labels.app}}", "web"},
		{"{{ flat.key }}", "flat"},
		{"%H:%M:%S %j %y %%Y", "23:04:05 060 24 %Y"},
		{"%s", "1709247845"},
		{"{{ n }}/{{ f }}/{{ big }}/{{ ok }}/{{ num }}", "42/1.5/1099511627776/true/12.50"},
		{"a{{ missing }}b", "ab"},
		{"a{{ missing.deep }}b", "ab"},
		{"a{{ service.deep }}b", "ab"},
		{`{{ missing ?? "none" }}`, "none"},
		{`{{ empty ?? 'none' }}`, "none"},
		{`{{ nothing ?? "nil" }}`, "nil"},
		{`{{ obj ?? "obj" }}`, "obj"},
		{`{{ service ?? "none" }}`, "checkout"},
		{"static", "static"},
		{"", ""},
		{"{ single } brace", "{ single } brace"},
	}
	for _, c := range cases {
		tpl, err := Compile(c.src)
		if err != nil {
			t.Fatalf("Compile(%q): %v", c.src, err)
		}
		if got := tpl.Render(ev(fields, when)); got != c.want {
			t.Errorf("%q: got %q, want %q", c.src, got, c.want)
		}
		// Append must append, not overwrite.
		if got := string(tpl.Append([]byte("pre:"), ev(fields, when))); got != "pre:"+c.want {
			t.Errorf("%q: Append got %q", c.src, got)
		}
	}
}

func TestNilFieldsAndZeroTime(t *testing.T) {
	tpl := MustCompile("x-{{ a }}-%Y.%m.%d")
	if got := tpl.Render(&event.Event{}); got != "x--0001.01.01" {
		t.Fatalf("got %q", got)
	}
}

func TestCompileErrors(t *testing.T) {
	cases := map[string]string{
		"a-{{ service":       "unclosed",
		"a-}}":               "without {{",
		"a-{{ }}":            "empty field",
		"a-{{ a..b }}":       "empty path segment",
		"a-{{ a b }}":        "unexpected",
		"%Q":                 "unknown directive %Q",
		"50%":                "at the end",
		`{{ a ?? none }}`:    "not a quoted string",
		`{{ a ?? "bad\q" }}`: "fallback",
		"{{ service | x }}":  "unexpected",
		"idx-{{ a }}-{{ b.":  "unclosed",
	}
	for src, want := range cases {
		_, err := Compile(src)
		if err == nil {
			t.Errorf("Compile(%q) succeeded, want error containing %q", src, want)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%q) = %v, want it to contain %q", src, err, want)
		}
	}
}

func TestKeysStaticTime(t *testing.T) {
	tpl := MustCompile("{{ service }}-{{ kubernetes.namespace }}-{{ service }}-%Y")
	if want := []string{"kubernetes", "kubernetes.namespace", "service"}; !reflect.DeepEqual(tpl.Keys(), want) {
		t.Errorf("Keys() = %v, want %v", tpl.Keys(), want)
	}
	if tpl.IsStatic() || !tpl.UsesTime() {
		t.Errorf("IsStatic=%v UsesTime=%v", tpl.IsStatic(), tpl.UsesTime())
	}
	if tpl.Literals() != "---" {
		t.Errorf("Literals() = %q", tpl.Literals())
	}
	st := MustCompile("logs-app-default%%")
	if !st.IsStatic() || st.UsesTime() || len(st.Keys()) != 0 {
		t.Errorf("static template: IsStatic=%v UsesTime=%v Keys=%v", st.IsStatic(), st.UsesTime(), st.Keys())
	}
	if got := st.Render(&event.Event{}); got != "logs-app-default%" {
		t.Errorf("got %q", got)
	}
	if MustCompile("%Y").IsStatic() {
		t.Error("a time template is not static")
	}
}

func TestAppendAllocations(t *testing.T) {
	tpl := MustCompile("app-{{ service }}-{{ kubernetes.namespace }}-{{ n }}-%Y.%m.%d")
	e := ev(map[string]any{"service": "checkout", "kubernetes": map[string]any{"namespace": "shop"}, "n": 3.0}, time.Now())
	buf := make([]byte, 0, 128)
	allocs := testing.AllocsPerRun(1000, func() { buf = tpl.Append(buf[:0], e) })
	if allocs != 0 {
		t.Fatalf("Append allocates %.1f times per call", allocs)
	}
}

func TestConcurrentUse(t *testing.T) {
	tpl := MustCompile("{{ a }}-%Y")
	done := make(chan string, 8)
	for i := range 8 {
		go func() {
			e := ev(map[string]any{"a": i}, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
			var s string
			for range 200 {
				s = tpl.Render(e)
			}
			done <- s
		}()
	}
	seen := map[string]bool{}
	for range 8 {
		seen[<-done] = true
	}
	if len(seen) != 8 {
		t.Fatalf("renders: %v", seen)
	}
}

func BenchmarkAppend(b *testing.B) {
	tpl := MustCompile("app-{{ service }}-{{ kubernetes.namespace }}-%Y.%m.%d")
	e := ev(map[string]any{"service": "checkout", "kubernetes": map[string]any{"namespace": "shop"}}, time.Now())
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		buf = tpl.Append(buf[:0], e)
	}
}

func BenchmarkAppendStatic(b *testing.B) {
	tpl := MustCompile("logs-app-default")
	e := ev(nil, time.Now())
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		buf = tpl.Append(buf[:0], e)
	}
}
