package event_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/event"
)

// Fields kept without a map (AddField) behave as the map did: every read
// and change sees them, a fifth key and every need for the map move them
// into Fields, and the written record is the same as with a map.
func TestFieldsKeptWithoutMap(t *testing.T) {
	withMap := func() *event.Event {
		return &event.Event{Raw: []byte("not json"), Fields: map[string]any{"a": 1, "b": "x", "c": nil}}
	}
	kept := func() *event.Event {
		e := &event.Event{Raw: []byte("not json")}
		e.AddField("a", 0)
		e.AddField("b", "x")
		e.AddField("c", nil)
		e.AddField("a", 1) // the last wins
		return e
	}
	ops := map[string]func(e *event.Event){
		"nothing":            func(e *event.Event) {},
		"set existing":       func(e *event.Event) { e.SetField("b", "y") },
		"set new":            func(e *event.Event) { e.SetField("d", 4.5) },
		"set two new, spill": func(e *event.Event) { e.SetField("d", 4.5); e.SetField("e", true) },
		"delete first":       func(e *event.Event) { e.DeleteField("a") },
		"delete last, set":   func(e *event.Event) { e.DeleteField("c"); e.SetField("c", "back") },
		"delete absent":      func(e *event.Event) { e.DeleteField("zz") },
		"mutable":            func(e *event.Event) { e.Mutable()["m"] = 1 },
		"shared":             func(e *event.Event) { e.SetFieldShared("s", map[string]any{"k": 1}, []byte(`{"k":1}`)) },
	}
	for name, op := range ops {
		a, b := withMap(), kept()
		if b.Fields != nil {
			t.Fatalf("%s: three keys made a map", name)
		}
		op(a)
		op(b)
		for _, k := range []string{"a", "b", "c", "d", "e", "m", "s", "zz"} {
			va, oka := a.Field(k)
			vb, okb := b.Field(k)
			kb, okk := b.Known(k)
			if !reflect.DeepEqual(va, vb) || oka != okb || !reflect.DeepEqual(kb, vb) || okk != okb {
				t.Errorf("%s: field %s: %v %v with a map, %v %v (known %v %v) kept", name, k, va, oka, vb, okb, kb, okk)
			}
		}
		if !b.HasFields() {
			t.Errorf("%s: HasFields false", name)
		}
		copied := map[string]any{}
		b.CopyKnown(copied)
		if ja, jb := string(event.AppendJSON(nil, a)), string(event.AppendJSON(nil, b)); ja != jb {
			t.Errorf("%s: written %s with a map, %s kept", name, ja, jb)
		}
		if !reflect.DeepEqual(b.Full(), a.Full()) || !reflect.DeepEqual(copied, a.Fields) {
			t.Errorf("%s: fields %v (copied %v), want %v", name, b.Fields, copied, a.Fields)
		}
	}

	e := kept()
	for i, k := range []string{"d", "e", "f"} {
		e.AddField(k, i)
	}
	if m := e.KnownFields(); len(m) != 6 || m["a"] != 1 || m["f"] != 2 {
		t.Fatalf("six keys: %v", m)
	}
	e.ResetFields()
	if e.HasFields() || e.Fields != nil {
		t.Fatal("ResetFields left fields")
	}
	if _, ok := e.Field("a"); ok {
		t.Fatal("ResetFields left a")
	}
	if got := string(event.AppendJSON(nil, e)); got != `{"message":"not json"}` {
		t.Fatalf("no fields written as %s", got)
	}
}

// On a raw JSON record, the selected keys the parser kept and the overlay
// give the same bytes as before (set in place, new keys last).
func TestFieldsKeptOverlay(t *testing.T) {
	e := parsed(`{"level":"info","n":3,"msg":"m"}`, "level", "n")
	if e.Fields != nil {
		t.Fatalf("two selected keys made a map: %v", e.Fields)
	}
	if v, ok := e.Field("msg"); !ok || v != "m" {
		t.Fatalf("unselected msg: %v %v", v, ok)
	}
	e = parsed(`{"level":"info","n":3,"msg":"m"}`, "level", "n")
	e.SetField("level", "warn")
	e.SetField("n_s", 0.003)
	e.DeleteField("msg")
	if got, want := string(event.AppendJSON(nil, e)), `{"level":"warn","n":3,"n_s":0.003}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if e.Fields != nil {
		t.Fatalf("a map was built: %v", e.Fields)
	}
}

// The parser says which selected keys a line lacks (SetSelection): setting
// one writes it after Raw's members; setting one the line has (also escaped,
// also after removing it, also after Raw changed) replaces it in place.
func TestSelectedKeyAbsentFromRaw(t *testing.T) {
	cases := []struct {
		raw  string
		ops  func(e *event.Event)
		want string
	}{
		{`{"a":1}`, func(e *event.Event) { e.SetField("s", 2) }, `{"a":1,"s":2}`},
		{`{"a":"s","b":{"s":1}}`, func(e *event.Event) { e.SetField("s", 2) }, `{"a":"s","b":{"s":1},"s":2}`},
		{`{"s":1,"a":1}`, func(e *event.Event) { e.SetField("s", 2) }, `{"s":2,"a":1}`},
		{`{"\u0073":1,"a":1}`, func(e *event.Event) { e.SetField("s", 2) }, `{"s":2,"a":1}`},
		{`{"s":1,"a":1}`, func(e *event.Event) { e.DeleteField("s"); e.SetField("s", 3) }, `{"s":3,"a":1}`},
		{`{"a":1,"s":1}`, func(e *event.Event) { e.DeleteField("s") }, `{"a":1}`},
		{`{"a":1}`, func(e *event.Event) { e.DeleteField("s"); e.SetField("s", 3) }, `{"a":1,"s":3}`},
		{`{"a":1}`, func(e *event.Event) { e.Raw = []byte(`{"s":0,"a":1}`); e.SetField("s", 4) }, `{"s":4,"a":1}`},
		{`{"a":1,"x":"\n"}`, func(e *event.Event) { e.SetField("s", 2); e.SetField("s", 5) }, `{"a":1,"x":"\n","s":5}`},
	}
	for _, c := range cases {
		e := parsed(c.raw, "a", "s")
		if e.Has(event.RawPlain) == strings.Contains(c.raw, `\`) {
			t.Errorf("%s: RawPlain %v", c.raw, e.Has(event.RawPlain))
		}
		c.ops(e)
		if got := string(event.AppendJSON(nil, e)); got != c.want {
			t.Errorf("%s: got %s, want %s", c.raw, got, c.want)
		}
	}
}

// Field answers for a selected key from what the parser found (no search
// of Raw when it is absent), and searches Raw again once Raw changed.
func TestFieldOfSelectedKey(t *testing.T) {
	cases := []struct {
		raw  string
		ops  func(e *event.Event)
		want any // nil: absent
	}{
		{`{"a":1}`, nil, nil},
		{`{"a":"s","b":{"s":1}}`, nil, nil},
		{`{"a":1,"s":"x"}`, nil, "x"},
		{`{"\u0073":"y","a":1}`, nil, "y"},
		{`{"a":1}`, func(e *event.Event) { e.Raw = []byte(`{"s":"z","a":1}`) }, "z"},
		{`{"a":1,"s":"x"}`, func(e *event.Event) { e.DeleteField("s") }, nil},
		{`{"a":1}`, func(e *event.Event) { e.SetField("s", "w") }, "w"},
	}
	for _, c := range cases {
		e := parsed(c.raw, "a", "s")
		if c.ops != nil {
			c.ops(e)
		}
		// KnownAbsent is never wrong, and knows without Raw here: the
		// key was selected, or removed.
		if got := e.KnownAbsent("s"); got != (c.want == nil) {
			t.Errorf("%s: KnownAbsent(s) = %v, want %v", c.raw, got, c.want == nil)
		}
		v, ok := e.Field("s")
		if ok != (c.want != nil) || (ok && v != c.want) {
			t.Errorf("%s: Field(s) = %v, %v; want %v", c.raw, v, ok, c.want)
		}
	}
	// A key the parser did not look for: maybe there, Raw must say.
	if e := parsed(`{"a":1}`, "a"); e.KnownAbsent("s") {
		t.Error("KnownAbsent of a key not selected (Raw not walked)")
	}
}
