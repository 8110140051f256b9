package event_test

import (
	"reflect"
	"testing"

	"github.com/sidelog/sidelog/event"
)

func sharedObject() map[string]any {
	return map[string]any{"pod": "p", "labels": map[string]any{"app": "a", "tier": "b"}, "ips": []any{"10.0.0.1"}}
}

// A shared value is written from its encoding, exactly as SetField writes
// the value, on the fast path, the walk and a replaced key.
func TestSetFieldSharedWritesEncoding(t *testing.T) {
	v := sharedObject()
	enc := event.AppendValue(nil, v)
	for _, raw := range []string{appLine, `{"k":1,"b":"\"k\""}`, `{"a":"k8s","b":2}`} {
		want := parsed(raw)
		want.SetField("k8s", v)
		got := parsed(raw)
		got.SetFieldShared("k8s", v, enc)
		if w, g := string(event.AppendJSON(nil, want)), string(event.AppendJSON(nil, got)); g != w {
			t.Errorf("%s: shared %s, SetField %s", raw, g, w)
		}
	}
	// The encoding is what is written (not v encoded again).
	e := parsed(`{"a":1}`)
	e.SetFieldShared("k", v, []byte(`"ENC"`))
	if got := string(event.AppendJSON(nil, e)); got != `{"a":1,"k":"ENC"}` {
		t.Fatalf("got %s", got)
	}
	// SetField of the same key replaces it, encoding included.
	e.SetField("k", 2)
	if got := string(event.AppendJSON(nil, e)); got != `{"a":1,"k":2}` {
		t.Fatalf("after SetField: %s", got)
	}
	if f, _ := e.Field("k"); f != 2 {
		t.Fatalf("Field = %v", f)
	}
}

// A stage that changes the record after Mutable changes its own copy,
// never the shared value, even under another key (a rename).
func TestSetFieldSharedMutableCopies(t *testing.T) {
	v := sharedObject()
	enc := event.AppendValue(nil, v)
	e := parsed(appLine, "level")
	e.SetFieldShared("kubernetes", v, enc)
	if f, _ := e.Field("kubernetes"); reflect.ValueOf(f).UnsafePointer() != reflect.ValueOf(v).UnsafePointer() {
		t.Fatal("Field does not return the shared value")
	}
	m := e.Mutable()
	m["kubernetes"].(map[string]any)["labels"].(map[string]any)["app"] = "changed"
	m["kubernetes"].(map[string]any)["ips"].([]any)[0] = "changed"
	if !reflect.DeepEqual(v, sharedObject()) {
		t.Fatalf("the shared value changed: %v", v)
	}
	if got := m["kubernetes"].(map[string]any)["labels"].(map[string]any)["app"]; got != "changed" {
		t.Fatalf("the record's copy: %v", got)
	}

	e = parsed(appLine, "level")
	e.SetFieldShared("kubernetes", v, enc)
	k, _ := e.Field("kubernetes")
	e.DeleteField("kubernetes")
	e.SetField("k8s", k)
	e.Mutable()["k8s"].(map[string]any)["pod"] = "changed"
	if !reflect.DeepEqual(v, sharedObject()) {
		t.Fatalf("the shared value changed through a rename: %v", v)
	}

	// A record that is not overlayable gets its copy at once.
	e = parsed(appLine, "level")
	e.Mutable()
	e.SetFieldShared("kubernetes", v, enc)
	e.Fields["kubernetes"].(map[string]any)["pod"] = "changed"
	if !reflect.DeepEqual(v, sharedObject()) {
		t.Fatalf("the shared value changed on a modified record: %v", v)
	}
}

// Field's absence check without a walk agrees with the walk.
func TestFieldAbsentKey(t *testing.T) {
	for _, c := range []struct {
		raw, key string
		want     bool
	}{
		{appLine, "kubernetes", false},
		{appLine, "status", true},
		{`{"a":"kubernetes"}`, "kubernetes", false},
		{`{"a":"\"kubernetes\""}`, "kubernetes", false},
		{`{"kube\u0072netes":1}`, "kubernetes", true},
		{`{"a":{"kubernetes":1}}`, "kubernetes", false},
	} {
		e := parsed(c.raw, "nothing")
		_, got := e.Field(c.key)
		if got != c.want {
			t.Errorf("%s: Field(%q) found %v, want %v", c.raw, c.key, got, c.want)
		}
	}
}

// A key Field found absent is written after Raw's members without looking
// for it in Raw again; the bytes are those of the walk, escapes included.
func TestFieldAbsentThenSetWritesLikeTheWalk(t *testing.T) {
	for _, c := range []struct{ raw, want string }{
		{appLine, appLine[:len(appLine)-1] + `,"stream":"stdout"}`},
		{`{"a":"x\"y","b":1}`, `{"a":"x\"y","b":1,"stream":"stdout"}`},
		{` { "k\u0041" : 1 , "s":"\\" } `, `{"k\u0041" : 1 , "s":"\\","stream":"stdout"}`},
		{`{}`, `{"stream":"stdout"}`},
		{`{"stream":"mine"}`, `{"stream":"stdout"}`},
		{`{"a":"\"stream\""}`, `{"a":"\"stream\"","stream":"stdout"}`},
	} {
		for _, other := range []bool{false, true} {
			want := c.want
			e := parsed(c.raw, "nothing")
			e.Field("stream")
			e.SetField("stream", "stdout") // absent: new; present: in place
			if other {
				e.SetField("other", 1)
				want = want[:len(want)-1] + `,"other":1}`
			}
			if got := string(event.AppendJSON(nil, e)); got != want {
				t.Errorf("%s (other %v): %s, want %s", c.raw, other, got, want)
			}
		}
	}
}
