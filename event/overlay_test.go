package event_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/event"
	pjson "github.com/sidelog/sidelog/parser/json"
)

const appLine = `{"ts":"2026-11-25T10:00:00.123Z","level":"info","msg":"request served","service":"checkout","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user_id":12345,"latency_ms":12.5,"path":"/api/v1/orders","status":200}`

// parsed returns raw parsed by the JSON parser with the given selected keys
// ("*" parses fully).
func parsed(raw string, keys ...string) *event.Event {
	p := pjson.New()
	if len(keys) != 1 || keys[0] != "*" {
		p.SelectKeys(keys, false)
	}
	e := &event.Event{Raw: []byte(raw)}
	p.Parse(e)
	return e
}

func TestOverlayWrite(t *testing.T) {
	cases := []struct {
		name string
		raw  string
		keys []string
		ops  func(e *event.Event)
		want string
	}{
		{"no change is verbatim", ` { "b" : 1 ,"a":[1, 2]} `, nil, func(e *event.Event) {}, ` { "b" : 1 ,"a":[1, 2]} `},
		{"new key goes last", `{"b":1,"a":2}`, nil, func(e *event.Event) { e.SetField("c", 3.5) }, `{"b":1,"a":2,"c":3.5}`},
		{"set replaces in place", `{"b":1,"a":2,"z":{"q":"}"}}`, []string{"a"}, func(e *event.Event) { e.SetField("a", "x") }, `{"b":1,"a":"x","z":{"q":"}"}}`},
		{"delete unselected key", `{"b":1,"a":"\"}","c":true}`, nil, func(e *event.Event) { e.DeleteField("a") }, `{"b":1,"c":true}`},
		{"delete first and last", `{"a":1,"b":2,"c":3}`, nil, func(e *event.Event) { e.DeleteField("a"); e.DeleteField("c") }, `{"b":2}`},
		{"delete everything", `{"a":1}`, nil, func(e *event.Event) { e.DeleteField("a") }, `{}`},
		{"set on empty object", `{}`, nil, func(e *event.Event) { e.SetField("a", nil) }, `{"a":null}`},
		{"delete absent changes nothing", `{"a":1}`, nil, func(e *event.Event) { e.DeleteField("x") }, `{"a":1}`},
		{"escaped key matches", `{"k\u0041":1,"b":2}`, nil, func(e *event.Event) { e.SetField("kA", 9) }, `{"kA":9,"b":2}`},
		{"rename", `{"msg":"hi","n":1}`, []string{"msg"}, func(e *event.Event) {
			v, _ := e.Field("msg")
			e.DeleteField("msg")
			e.SetField("message", v)
		}, `{"n":1,"message":"hi"}`},
		{"delete then set again", `{"a":1,"b":2}`, nil, func(e *event.Event) { e.DeleteField("a"); e.SetField("a", 5) }, `{"a":5,"b":2}`},
		{"set value invalid utf8", `{"a":1}`, nil, func(e *event.Event) { e.SetField("m", "x\xffy") }, `{"a":1,"m":"x` + "\ufffd" + `y"}`},
		{"nested value sorted", `{"a":1}`, nil, func(e *event.Event) { e.SetField("k", map[string]any{"z": 1, "b": []any{"q"}}) }, `{"a":1,"k":{"b":["q"],"z":1}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := parsed(c.raw, c.keys...)
			if !e.Has(event.RawJSON) {
				t.Fatalf("not RawJSON: %v", e.Fields)
			}
			c.ops(e)
			if e.Has(event.Modified) {
				t.Fatal("overlay change set Modified")
			}
			if !e.Partial {
				t.Fatal("overlay change completed the map")
			}
			got := string(event.AppendJSON(nil, e))
			if got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
			// Writing twice (two outputs) gives the same bytes.
			if again := string(event.AppendJSON(nil, e)); again != got {
				t.Fatalf("second write differs: %s", again)
			}
		})
	}
}

func TestOverlayFieldsSeeChanges(t *testing.T) {
	e := parsed(appLine, "level", "msg")
	e.SetField("level", "warn")
	e.SetField("latency_s", 0.0125)
	e.DeleteField("msg")
	if f := e.KnownFields(); f["level"] != "warn" || f["latency_s"] != 0.0125 {
		t.Fatalf("Fields do not hold the set values: %v", f)
	}
	if _, ok := e.Fields["msg"]; ok {
		t.Fatal("removed key still in Fields")
	}
	if _, ok := e.Field("msg"); ok {
		t.Fatal("Field finds a removed key")
	}
	if v, ok := e.Field("status"); !ok || v != int64(200) {
		t.Fatalf("Field(status) of an unselected key = %v %v", v, ok)
	}
	if e.Partial {
		t.Fatal("reading an unselected key must complete the map")
	}
	full := e.Full()
	if _, ok := full["msg"]; ok {
		t.Fatal("completion brought a removed key back")
	}
	if full["level"] != "warn" || full["service"] != "checkout" || len(full) != 9 {
		t.Fatalf("completed map %v", full)
	}
	// The overlay survives completion: the write still copies raw members.
	if !e.HasOverlay() {
		t.Fatal("Full dropped the overlay")
	}
	want := `{"ts":"2026-11-25T10:00:00.123Z","level":"warn","service":"checkout","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user_id":12345,"latency_ms":12.5,"path":"/api/v1/orders","status":200,"latency_s":0.0125}`
	if got := string(event.AppendJSON(nil, e)); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestFieldOfAbsentKeyDoesNotComplete(t *testing.T) {
	e := parsed(appLine, "level")
	if _, ok := e.Field("nope"); ok {
		t.Fatal("found an absent key")
	}
	if !e.Partial {
		t.Fatal("looking up an absent key completed the map")
	}
	e.DeleteField("nope")
	if e.HasOverlay() {
		t.Fatal("removing an absent key created an overlay")
	}
}

func TestMutableFoldsOverlay(t *testing.T) {
	e := parsed(`{"b":1,"a":2,"c":3}`, "a")
	e.SetField("d", "x")
	e.DeleteField("c")
	m := e.Mutable()
	if e.HasOverlay() || !e.Has(event.Modified) {
		t.Fatal("Mutable kept the overlay")
	}
	m["e"] = true
	want := `{"a":2,"b":1,"d":"x","e":true}`
	if got := string(event.AppendJSON(nil, e)); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// Once modified, SetField writes into the map.
	e.SetField("f", 1)
	if e.HasOverlay() || e.Fields["f"] != 1 {
		t.Fatal("SetField after Mutable used the overlay")
	}
}

func TestNotRawJSONFallsBackToMap(t *testing.T) {
	e := &event.Event{Raw: []byte("a=1"), Fields: map[string]any{"a": "1"}}
	e.SetField("b", 2)
	e.DeleteField("a")
	if e.HasOverlay() || !e.Has(event.Modified) {
		t.Fatal("a record that is not RawJSON got an overlay")
	}
	if got := string(event.AppendJSON(nil, e)); got != `{"b":2}` {
		t.Fatalf("got %s", got)
	}
	// Invalid UTF-8 in the line: the parser does not set RawJSON, so the
	// map path writes U+FFFD.
	e = parsed(`{"m":"a`+"\xff"+`","n":1}`, "n")
	if e.Has(event.RawJSON) {
		t.Fatal("RawJSON on invalid UTF-8")
	}
	e.SetField("x", 1)
	if got := string(event.AppendJSON(nil, e)); got != `{"m":"a`+"\ufffd"+`","n":1,"x":1}` {
		t.Fatalf("got %s", got)
	}
}

func TestMalformedRawFallsBack(t *testing.T) {
	// RawJSON set by hand on bytes that are not an object: the walk fails
	// and the map is written instead.
	for _, raw := range []string{`{"a":1`, `{"a" 1}`, `[1]`, `{"a":1,}`, `{"a":tru`, `{"a":"x}`} {
		e := &event.Event{Raw: []byte(raw), Fields: map[string]any{"a": 1}, Flags: event.RawJSON}
		e.SetField("b", 2)
		if got := string(event.AppendJSON(nil, e)); got != `{"a":1,"b":2}` {
			t.Errorf("%s: got %s", raw, got)
		}
	}
}

// applyOps runs a small op language on e and on the reference map ref:
// "+k=v" sets string v, "#k=n" sets number n, "-k" removes, "?k" reads,
// separated by ';'.
func applyOps(t *testing.T, e *event.Event, ref map[string]any, ops string) {
	for op := range strings.SplitSeq(ops, ";") {
		if len(op) < 2 {
			continue
		}
		body := op[1:]
		k, v, _ := strings.Cut(body, "=")
		switch op[0] {
		case '+':
			e.SetField(k, v)
			ref[k] = v
		case '#':
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				n = float64(len(v))
			}
			e.SetField(k, n)
			ref[k] = n
		case '-':
			e.DeleteField(k)
			delete(ref, k)
		case '?':
			_, got := e.Field(k)
			_, want := ref[k]
			if got != want {
				t.Fatalf("Field(%q) present = %v, reference %v", k, got, want)
			}
		}
	}
}

// roundTrip normalises a value through encoding/json (numbers become
// float64, invalid UTF-8 U+FFFD).
func roundTrip(t *testing.T, v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %v: %v", v, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return m
}

// FuzzOverlay checks the overlay write against a reference: the line
// decoded by encoding/json, the same changes applied to that map. The
// decoded output, the completed Fields and the Mutable (sorted map) write
// must all equal it.
func FuzzOverlay(f *testing.F) {
	seeds := []struct{ raw, keys, ops string }{
		{appLine, "level", "#latency_s=0.0125"},
		{appLine, "level,msg", "?msg;-msg;+message=hi;?message;?status"},
		{appLine, "*", "-ts;-status;+level=warn"},
		{appLine, "", "-nope;+a=b;-a"},
		{` { "b" : 1 ,"a":[1, {"x":"]}"}]} `, "a", "+c=1;-b;?a"},
		{`{"k\u0041":1,"b":"\\\"","kA":2}`, "b", "+kA=z;?b"},
		{`{"a":1,"b":2,"a":3}`, "a", "-a;?a;+a=q"},
		{`{}`, "", "+a=1;+a=2;-a;+b=3"},
		{`{"e":"\ud83d\ude00 \u2028","n":-1.5e-7,"t":true,"z":null}`, "n", "#n=1e300;-z;+u=\u2028"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.raw), s.keys, s.ops)
	}
	f.Fuzz(func(t *testing.T, raw []byte, keys, ops string) {
		var sel []string
		if keys != "" {
			sel = strings.Split(keys, ",")
		}
		e := parsed(string(raw), sel...)
		if !e.Has(event.RawJSON) {
			return // not a JSON object of valid UTF-8: no overlay
		}
		var ref map[string]any
		if err := json.Unmarshal(raw, &ref); err != nil {
			t.Fatalf("parser accepted what encoding/json refuses: %v", err)
		}
		applyOps(t, e, ref, ops)
		want := roundTrip(t, ref)

		out := event.AppendJSON(nil, e)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %s", out)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("overlay write\n got %s\nwant %v", out, want)
		}
		if !e.HasOverlay() && !bytes.Equal(out, raw) {
			t.Fatalf("no overlay but not verbatim: %s", out)
		}
		if full := roundTrip(t, e.Full()); !reflect.DeepEqual(full, want) {
			t.Fatalf("completed Fields %v, want %v", full, want)
		}
		if again := event.AppendJSON(nil, e); !bytes.Equal(again, out) {
			t.Fatalf("write after Full differs:\n%s\n%s", again, out)
		}
		e.Mutable()
		if sorted := roundTrip(t, json.RawMessage(event.AppendJSON(nil, e))); !reflect.DeepEqual(sorted, want) {
			t.Fatalf("map write %v, want %v", sorted, want)
		}
	})
}

func BenchmarkAppendJSONRaw(b *testing.B) {
	e := parsed(appLine, "level")
	benchAppend(b, e)
}

func BenchmarkAppendJSONOverlaySet(b *testing.B) {
	e := parsed(appLine, "level", "latency_ms")
	e.SetField("latency_s", 0.0125)
	benchAppend(b, e)
}

func BenchmarkAppendJSONOverlaySetRemove(b *testing.B) {
	e := parsed(appLine, "level", "msg")
	v, _ := e.Field("msg")
	e.DeleteField("msg")
	e.SetField("message", v)
	e.DeleteField("trace_id")
	benchAppend(b, e)
}

// The path the overlay replaces: complete the map, serialise it sorted.
func BenchmarkAppendJSONMutableMap(b *testing.B) {
	e := parsed(appLine, "*")
	e.Mutable()["latency_s"] = 0.0125
	benchAppend(b, e)
}

func benchAppend(b *testing.B, e *event.Event) {
	buf := event.AppendJSON(nil, e)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = event.AppendJSON(buf[:0], e)
	}
}

// Per record as scenario 2 does it: parse two selected keys, set a field,
// write twice (two outputs).
func BenchmarkParseSetWrite(b *testing.B) {
	for _, mode := range []string{"overlay", "mutable"} {
		b.Run(mode, func(b *testing.B) {
			p := pjson.New()
			p.SelectKeys([]string{"level", "latency_ms"}, false)
			raw := []byte(appLine)
			var buf []byte
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				e := event.Event{Raw: raw}
				p.Parse(&e)
				if mode == "overlay" {
					e.SetField("latency_s", 0.0125)
				} else {
					e.Mutable()["latency_s"] = 0.0125
				}
				buf = event.AppendJSON(buf[:0], &e)
				buf = event.AppendJSON(buf[:0], &e)
			}
		})
	}
}

// A line with a duplicate key is not RawJSON since the parser normalises it
// (last wins, issue 20): the overlay never sees it, and a change writes the
// normalised map.
func TestDuplicateKeysNotOverlaid(t *testing.T) {
	e := parsed(`{"a":1,"b":2,"a":3}`)
	if e.Has(event.RawJSON) {
		t.Fatal("a line with a duplicate key kept RawJSON")
	}
	e.SetField("a", 4)
	if got, want := string(event.AppendJSON(nil, e)), `{"a":4,"b":2}`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
