package fieldpath

import (
	"errors"
	"reflect"
	"testing"

	"github.com/sidelog/sidelog/event"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Path
		ok   bool
	}{
		{"a", Path{"a"}, true},
		{"a.b.c", Path{"a", "b", "c"}, true},
		{"", nil, false},
		{"a..b", nil, false},
		{".a", nil, false},
		{"a.", nil, false},
	} {
		got, ok := Parse(c.in)
		if ok != c.ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q) = %v %v, want %v %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestGetSetDelete(t *testing.T) {
	m := map[string]any{"a": map[string]any{"b": 1}, "s": "x"}
	p := func(s string) Path { q, _ := Parse(s); return q }
	if v, ok := p("a.b").Get(m); !ok || v != 1 {
		t.Fatalf("Get a.b = %v %v", v, ok)
	}
	if _, ok := p("s.x").Get(m); ok {
		t.Fatal("Get through a string must fail")
	}
	if _, ok := p("a.z").Get(m); ok {
		t.Fatal("Get of a missing key must fail")
	}
	p("a.c.d").Set(m, 2)
	p("s.x").Set(m, 3) // replaces the string by an object
	want := map[string]any{"a": map[string]any{"b": 1, "c": map[string]any{"d": 2}}, "s": map[string]any{"x": 3}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("after Set: %v", m)
	}
	if v, ok := p("a.b").Delete(m); !ok || v != 1 {
		t.Fatalf("Delete a.b = %v %v", v, ok)
	}
	if _, ok := p("a.b").Delete(m); ok {
		t.Fatal("second Delete must report absence")
	}
	if _, ok := p("q.r").Delete(m); ok {
		t.Fatal("Delete under a missing object must report absence")
	}
}

func TestDeepCopy(t *testing.T) {
	orig := map[string]any{"a": map[string]any{"b": []any{1, map[string]any{"c": 2}}}}
	cv, err := DeepCopy(orig)
	if err != nil {
		t.Fatal(err)
	}
	c := cv.(map[string]any)
	c["a"].(map[string]any)["b"].([]any)[1].(map[string]any)["c"] = 3
	if orig["a"].(map[string]any)["b"].([]any)[1].(map[string]any)["c"] != 2 {
		t.Fatal("copy shares a nested object with the original")
	}
}

// Issue 20 item 1: a cyclic value (a record that holds itself) is refused
// with an error instead of recursing until the stack overflows.
func TestDeepCopyRefusesCycleAndDepth(t *testing.T) {
	cyc := map[string]any{"a": 1}
	cyc["self"] = cyc
	if _, err := DeepCopy(cyc); !errors.Is(err, event.ErrTooDeep) {
		t.Fatalf("cycle: err = %v", err)
	}
	var deep any = "x"
	for range event.MaxDepth + 1 {
		deep = []any{deep}
	}
	if _, err := DeepCopy(deep); !errors.Is(err, event.ErrTooDeep) {
		t.Fatalf("depth %d: err = %v", event.MaxDepth+1, err)
	}
	ok := any("x")
	for range event.MaxDepth {
		ok = []any{ok}
	}
	if _, err := DeepCopy(ok); err != nil {
		t.Fatalf("depth %d refused: %v", event.MaxDepth, err)
	}
}
