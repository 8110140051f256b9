package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestAppendJSON(t *testing.T) {
	cases := []struct {
		name string
		e    Event
		want string
	}{
		{"raw passthrough", Event{Raw: []byte(`{"b":1,"a":2}`), Flags: RawJSON, Fields: map[string]any{"a": 2.0}}, `{"b":1,"a":2}`},
		{"modified serialises fields sorted", Event{Raw: []byte(`{"b":1}`), Flags: RawJSON | Modified, Fields: map[string]any{"b": int64(1), "a": "x"}}, `{"a":"x","b":1}`},
		{"no fields", Event{Raw: []byte("plain \"text\"")}, `{"message":"plain \"text\""}`},
		{"invalid utf8", Event{Fields: map[string]any{"message": "a\xffb"}}, `{"message":"a` + "\ufffd" + `b"}`},
		{"controls", Event{Fields: map[string]any{"m": "t\tn\nq\x01"}}, `{"m":"t\tn\nq\u0001"}`},
		{"duration and meta", Event{Fields: map[string]any{"d": 1500 * time.Millisecond, "m": &Meta{Input: "app", Path: "/a.log", Time: time.Unix(0, 0)}}}, `{"d":"1.5s","m":{"input":"app","path":"/a.log","time":"1970-01-01T00:00:00Z"}}`},
		{"nested", Event{Fields: map[string]any{"k": map[string]any{"z": []any{1.5, nil, true}, "a": 1e21}}}, `{"k":{"a":1e+21,"z":[1.5,null,true]}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := string(AppendJSON(nil, &c.e))
			if got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatalf("invalid JSON %s", got)
			}
		})
	}
}

func TestAckReleasesOnce(t *testing.T) {
	done := 0
	a := NewAck(2, func() { done++ })
	e1, e2 := &Event{}, &Event{}
	e1.SetAck(a)
	e2.SetAck(a)
	e1.Retain(1) // fan-out to two outputs
	e1.Done()
	e2.Done()
	if done != 0 {
		t.Fatal("done before every reference was released")
	}
	e1.Done()
	if done != 1 {
		t.Fatalf("done ran %d times, want 1", done)
	}
}

func TestJoinCarriesAcks(t *testing.T) {
	var firstDone, secondDone bool
	a1 := NewAck(1, func() { firstDone = true })
	a2 := NewAck(1, func() { secondDone = true })
	first, second := &Event{}, &Event{}
	first.SetAck(a1)
	second.SetAck(a2)
	second.Join(first)
	if firstDone {
		t.Fatal("joining released the first piece")
	}
	second.Done()
	if !firstDone || !secondDone {
		t.Fatal("done of the joined event did not release both pieces")
	}
}

func BenchmarkAppendJSONFields(b *testing.B) {
	e := &Event{Fields: map[string]any{"ts": "2026-11-25T10:00:00.123Z", "level": "info", "msg": "request served", "service": "checkout", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "user_id": int64(12345), "latency_ms": 12.5, "path": "/api/v1/orders", "status": int64(200)}}
	buf := AppendJSON(nil, e)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], e)
	}
}

func BenchmarkNewEvent(b *testing.B) {
	raw := []byte(`{"level":"info","msg":"x"}`)
	b.ReportAllocs()
	for b.Loop() {
		slab := make([]Event, 256)
		for i := range slab {
			slab[i].Raw = raw
		}
	}
}

// Issue 20 item 1: a record that holds itself (modify `set: {x: '$env'}` on
// today's main) made AppendJSON recurse until a fatal stack overflow. It is
// now cut at MaxDepth and CheckDepth reports it.
func TestAppendJSONCycleAndDepthDoNotCrash(t *testing.T) {
	f := map[string]any{"msg": "hi"}
	f["x"] = f
	e := &Event{Fields: f}
	out := AppendJSON(nil, e)
	if !bytes.Contains(out, []byte(DepthExceeded)) || !bytes.HasPrefix(out, []byte(`{"msg":"hi","x":{"msg":"hi"`)) {
		t.Fatalf("got %.200s", out)
	}
	if err := CheckDepth(f); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("CheckDepth(cycle) = %v", err)
	}
	// A list nested MaxDepth deep is written whole; one more level is cut.
	var v any = "leaf"
	for range MaxDepth {
		v = []any{v}
	}
	if err := CheckDepth(v); err != nil {
		t.Fatal(err)
	}
	if out := AppendValue(nil, v); !bytes.Contains(out, []byte(`"leaf"`)) || !json.Valid(out) {
		t.Fatalf("depth %d not written whole", MaxDepth)
	}
	v = []any{v}
	if err := CheckDepth(v); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("CheckDepth(depth %d) = %v", MaxDepth+1, err)
	}
	if out := AppendValue(nil, v); bytes.Contains(out, []byte(`"leaf"`)) || !bytes.Contains(out, []byte(DepthExceeded)) || !json.Valid(out) {
		t.Fatalf("depth %d: leaf written or output invalid", MaxDepth+1)
	}
}
