package json

import (
	"bytes"
	stdjson "encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/sidelog/sidelog/event"
)

const appLine = `{"ts":"2026-11-25T10:00:00.123Z","level":"info","msg":"request served","service":"checkout","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user_id":12345,"latency_ms":12.5,"path":"/api/v1/orders","status":200}`

func parse(p *Parser, line string) *event.Event {
	e := &event.Event{Raw: []byte(line)}
	p.Parse(e)
	return e
}

func TestParseValues(t *testing.T) {
	e := parse(New(), appLine)
	if e.Has(event.ParseFailed) || !e.Has(event.RawJSON) || e.Has(event.InvalidUTF8) {
		t.Fatalf("flags %b, fields %v", e.Flags, e.Fields)
	}
	want := map[string]any{
		"ts": "2026-11-25T10:00:00.123Z", "level": "info", "msg": "request served",
		"service": "checkout", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
		"user_id": int64(12345), "latency_ms": 12.5, "path": "/api/v1/orders", "status": int64(200),
	}
	if !reflect.DeepEqual(e.Fields, want) {
		t.Fatalf("got %#v", e.Fields)
	}
}

func TestParseKinds(t *testing.T) {
	cases := []struct {
		line string
		want map[string]any
	}{
		{`{}`, map[string]any{}},
		{" \t{\"a\" : [1, -2.5e3, true, false, null, \"x\"] }\r", map[string]any{"a": []any{int64(1), -2500.0, true, false, nil, "x"}}},
		{`{"a":{"b":{"c":"d"}}}`, map[string]any{"a": map[string]any{"b": map[string]any{"c": "d"}}}},
		{`{"e":"q\"b\\s\/n\nt\tu\u00e9\ud83d\ude00"}`, map[string]any{"e": "q\"b\\s/n\nt\tué😀"}},
		{`{"lone":"\ud800x","pair":"\ud800\u0041"}`, map[string]any{"lone": "\ufffdx", "pair": "\ufffdA"}},
		{`{"big":9223372036854775807,"bigger":9223372036854775808,"neg":-9223372036854775808,"z":-0}`,
			map[string]any{"big": int64(9223372036854775807), "bigger": 9223372036854775808.0, "neg": int64(-9223372036854775808), "z": int64(0)}},
		{`{"inf":1e400}`, map[string]any{"inf": stdjson.Number("1e400")}},
		{`{"k\u0041":1,"k\u0041":2}`, map[string]any{"kA": int64(2)}},
		{`{"":""}`, map[string]any{"": ""}},
		{`{"a":[]}`, map[string]any{"a": []any{}}},
	}
	for _, c := range cases {
		e := parse(New(), c.line)
		if e.Has(event.ParseFailed) {
			t.Errorf("%s: failed: %v", c.line, e.Fields)
			continue
		}
		if !reflect.DeepEqual(e.Fields, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.line, e.Fields, c.want)
		}
	}
}

func TestParseFailures(t *testing.T) {
	cases := map[string]string{
		``:                 "json: unexpected end of line",
		`   `:              "json: unexpected end of line",
		`[1,2]`:            "json: not an object",
		`"str"`:            "json: not an object",
		`42`:               "json: not an object",
		`00`:               "json: not an object",
		`"a" {}`:           "json: not an object",
		`hello world`:      "json: invalid character 'h' at offset 0",
		`{"a":1`:           "json: unexpected end of line",
		`{"a":1,}`:         "json: invalid character '}' at offset 7",
		`{"a":1} x`:        "json: data after the object at offset 8",
		`{"a":01}`:         "json: invalid character '1' at offset 6",
		`{"a":1.}`:         "json: invalid character '}' at offset 7",
		`{"a":"\x"}`:       "json: invalid escape at offset 6",
		"{\"a\":\"\x01\"}": "json: control character in string at offset 6",
		`{"a":tru}`:        "json: invalid character 't' at offset 5",
		`{"a":tr`:          "json: unexpected end of line",
		`{a:1}`:            "json: invalid character 'a' at offset 1",
		`{"a" 1}`:          "json: invalid character '1' at offset 5",
		`{"a":"\u12"}`:     "json: invalid escape at offset 6",
		`{"a":[1 2]}`:      "json: invalid character '2' at offset 8",
		`{"a":+1}`:         "json: invalid character '+' at offset 5",
		`{"a":NaN}`:        "json: invalid character 'N' at offset 5",
	}
	for _, sel := range []bool{false, true} {
		for line, reason := range cases {
			p := New()
			if sel {
				p.SelectKeys([]string{"a"}, false)
			}
			e := parse(p, line)
			if !e.Has(event.ParseFailed) || e.Has(event.RawJSON) || e.Partial {
				t.Errorf("sel=%v %q: flags %b", sel, line, e.Flags)
				continue
			}
			if e.Fields["message"] != line || e.Fields["parse_error"] != reason {
				t.Errorf("sel=%v %q: got %#v, want reason %q", sel, line, e.Fields, reason)
			}
		}
	}
	deep := strings.Repeat("[", 600) + strings.Repeat("]", 600)
	e := parse(New(), `{"a":`+deep+`}`)
	if !e.Has(event.ParseFailed) || !strings.HasPrefix(e.Fields["parse_error"].(string), "json: nesting too deep") {
		t.Errorf("deep: %v", e.Fields["parse_error"])
	}
}

func TestInvalidUTF8(t *testing.T) {
	line := "{\"a\":\"x\xffy\",\"b\\u00e9\":\"\xc3\xa9\"}"
	for _, sel := range []bool{false, true} {
		p := New()
		if sel {
			p.SelectKeys([]string{"a"}, false)
		}
		e := parse(p, line)
		if e.Has(event.ParseFailed) || e.Has(event.RawJSON) || !e.Has(event.InvalidUTF8) {
			t.Fatalf("flags %b %v", e.Flags, e.Fields)
		}
		if v, _ := e.Known("a"); v != "x\xffy" {
			t.Fatalf("bytes not kept: %q", v)
		}
		if got := e.Full()["bé"]; got != "é" {
			t.Fatalf("full: %q", got)
		}
	}
}

func TestSelectKeys(t *testing.T) {
	p := New()
	p.SelectKeys([]string{"level", "status", "missing"}, false)
	raw := []byte(appLine)
	e := &event.Event{Raw: raw}
	p.Parse(e)
	if !e.Partial || !e.Has(event.RawJSON) {
		t.Fatalf("partial %v flags %b", e.Partial, e.Flags)
	}
	if e.Fields != nil {
		t.Fatalf("a map for two selected keys: %#v", e.Fields)
	}
	if f := e.KnownFields(); !reflect.DeepEqual(f, map[string]any{"level": "info", "status": int64(200)}) {
		t.Fatalf("selected: %#v", f)
	}
	e.Fields["added"] = "static" // a later stage adds a key before Full
	full := e.Full()
	if len(full) != 10 || full["msg"] != "request served" || full["added"] != "static" || e.Partial {
		t.Fatalf("full: %#v", full)
	}
	if !bytes.Equal(raw, []byte(appLine)) {
		t.Fatal("Raw was modified")
	}

	// No key needed: only validation, Fields nil until Full.
	p.SelectKeys(nil, false)
	e = &event.Event{Raw: []byte(appLine)}
	p.Parse(e)
	if e.Fields != nil || !e.Partial || !e.Has(event.RawJSON) {
		t.Fatalf("validation only: %#v %v", e.Fields, e.Partial)
	}
	if len(e.Full()) != 9 {
		t.Fatalf("full after validation: %#v", e.Fields)
	}

	// Many keys use a set; escaped keys still match.
	many := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "kA"}
	p.SelectKeys(many, false)
	e = parse(p, `{"k\u0041":1,"zz":2,"k8":[3]}`)
	if f := e.KnownFields(); !reflect.DeepEqual(f, map[string]any{"kA": int64(1), "k8": []any{int64(3)}}) {
		t.Fatalf("set: %#v", f)
	}
	// More selected members than the event keeps without a map (four),
	// a duplicate among them (the last wins): all reach the map.
	e = parse(p, `{"k0":0,"k1":1,"k2":2,"zz":9,"k3":3,"k4":4,"k1":"one","k5":5}`)
	want := map[string]any{"k0": int64(0), "k1": "one", "k2": int64(2), "k3": int64(3), "k4": int64(4), "k5": int64(5)}
	if f := e.KnownFields(); !reflect.DeepEqual(f, want) {
		t.Fatalf("six selected: %#v", f)
	}
	if f := e.Full(); len(f) != 7 || f["zz"] != int64(9) || f["k1"] != "one" {
		t.Fatalf("six selected, completed: %#v", f)
	}

	// Keys are told apart by length first: long keys (one length bit for
	// 63 bytes and more), same lengths, escaped keys.
	long70, long80 := strings.Repeat("k", 70), strings.Repeat("k", 80)
	p.SelectKeys([]string{"abc", long70, "é"}, false)
	e = parse(p, `{"xyz":1,"`+long80+`":2,"`+long70+`":3,"ab\u0063":4,"\u00e9":5,"ab":6}`)
	want = map[string]any{long70: int64(3), "abc": int64(4), "é": int64(5)}
	if f := e.KnownFields(); !reflect.DeepEqual(f, want) {
		t.Fatalf("by length: %#v", f)
	}

	p.SelectKeys(nil, true) // back to full parsing
	e = parse(p, appLine)
	if e.Partial || len(e.Fields) != 9 {
		t.Fatalf("all: %#v", e.Fields)
	}
}

func TestParseObjectAndValid(t *testing.T) {
	m, ok, reason := ParseObject([]byte(`{"log":"hi\n","stream":"stdout"}`))
	if reason != "" || !ok || m["log"] != "hi\n" {
		t.Fatal(m, ok, reason)
	}
	if _, _, reason := ParseObject([]byte(`{"log"`)); reason == "" {
		t.Fatal("want error")
	}
	if ok, utf := Valid([]byte(appLine)); !ok || !utf {
		t.Fatal("valid")
	}
	if ok, utf := Valid([]byte("{\"a\":\"\xff\"}")); !ok || utf {
		t.Fatal("invalid utf8")
	}
	if ok, _ := Valid([]byte(`[]`)); ok {
		t.Fatal("array is not an object line")
	}
}

// normalize turns our values into what encoding/json (with UseNumber)
// produces: numbers as json.Number-equivalent strings compared by value,
// invalid UTF-8 as U+FFFD.
// keysCollide reports whether two keys of an object in v become the same
// key once their invalid UTF-8 is replaced (as encoding/json does).
func keysCollide(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		seen := make(map[string]bool, len(x))
		for k, v := range x {
			n := string([]rune(k))
			if seen[n] || keysCollide(v) {
				return true
			}
			seen[n] = true
		}
	case []any:
		for _, v := range x {
			if keysCollide(v) {
				return true
			}
		}
	}
	return false
}

func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[string([]rune(k))] = normalize(v)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, v := range x {
			a[i] = normalize(v)
		}
		return a
	case string:
		return string([]rune(x))
	case int64:
		return fmt.Sprint(x)
	case float64:
		return fmt.Sprint(x)
	case stdjson.Number:
		f, err := x.Float64()
		if err != nil {
			return "overflow"
		}
		if i, err := x.Int64(); err == nil {
			return fmt.Sprint(i)
		}
		return fmt.Sprint(f)
	}
	return v
}

// checkAgainstStdlib asserts that our parser agrees with encoding/json on
// validity and on values, and that a failure keeps the raw line.
func checkAgainstStdlib(t *testing.T, line []byte) {
	t.Helper()
	for _, sel := range []bool{false, true} {
		p := New()
		if sel {
			p.SelectKeys([]string{"a", "b"}, false)
		}
		e := &event.Event{Raw: append([]byte(nil), line...)}
		p.Parse(e)
		if !bytes.Equal(e.Raw, line) {
			t.Fatalf("Raw modified: %q", e.Raw)
		}
		var std map[string]any
		d := stdjson.NewDecoder(bytes.NewReader(line))
		d.UseNumber()
		stdErr := d.Decode(&std)
		if stdErr == nil && len(bytes.Trim(line[d.InputOffset():], " \t\r\n")) > 0 {
			stdErr = fmt.Errorf("trailing data")
		}
		if stdErr == nil && std == nil {
			stdErr = fmt.Errorf("null is not an object")
		}
		if e.Has(event.ParseFailed) {
			if e.Fields["message"] != string(line) {
				t.Fatalf("lost raw line: %q", e.Fields["message"])
			}
			if stdErr == nil && !strings.Contains(e.Fields["parse_error"].(string), "too deep") {
				t.Fatalf("we refuse %q (%v), encoding/json accepts", line, e.Fields["parse_error"])
			}
			continue
		}
		if stdErr != nil {
			t.Fatalf("we accept %q, encoding/json refuses: %v", line, stdErr)
		}
		// RawJSON unless the line has invalid UTF-8 or a duplicate key
		if e.Has(event.RawJSON) == (e.Has(event.InvalidUTF8) || stdDup(line)) {
			t.Fatalf("flags %b", e.Flags)
		}
		if keysCollide(e.Full()) {
			// Keys that differ only in invalid UTF-8: we keep their bytes
			// (distinct keys), encoding/json makes them one key.
			continue
		}
		got := normalize(e.Full())
		if want := normalize(std); !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %#v\nwant %#v", line, got, want)
		}
	}
}

func FuzzJSON(f *testing.F) {
	for _, s := range []string{appLine, `{}`, `{"a":[1,{"b":null}],"b":"\u00e9\ud83d\ude00"}`, "{\"a\":\"\xff\"}", `[1]`, `{"a":1e400}`, `{"a":-0.5E-3}`} {
		f.Add([]byte(s))
	}
	for _, s := range []string{`{"a":1,"\u0061":2}`, `{"x":{"ab":1,"ab":2}}`, `{"n":[{"aaaaaaaaXbbbbbbbbc":1,"aaaaaaaaXbbbbbbbbc":2}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkAgainstStdlib(t, line)
		checkDupAgainstStdlib(t, line)
	})
}

func TestConcurrentParse(t *testing.T) {
	for _, sel := range []bool{false, true} {
		p := New()
		if sel {
			p.SelectKeys([]string{"level"}, false)
		}
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 200; i++ {
					line := appLine
					if i%3 == 0 {
						line = `{"a":1}`
					}
					e := parse(p, line)
					if e.Has(event.ParseFailed) || len(e.Full()) == 0 {
						t.Error(e.Fields)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
}

// Selected string values come from the intern table: they must be right
// for many distinct values (slot collisions, replacement), must not alias
// the line (a recycled read buffer must not change them), and the table
// must be safe for concurrent parsing.
func TestSelectedValuesInterned(t *testing.T) {
	p := New()
	p.SelectKeys([]string{"level", "id"}, false)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3000 {
				level := []string{"info", "debug", "warn", "error"}[i%4]
				id := fmt.Sprintf("u-%d-%d", g, i%700)
				raw := []byte(`{"level":"` + level + `","id":"` + id + `","n":1}`)
				e := &event.Event{Raw: raw}
				p.Parse(e)
				for k := range raw {
					raw[k] = 'X' // the reader reuses its buffer
				}
				if f := e.KnownFields(); f["level"] != level || f["id"] != id || len(f) != 2 {
					t.Errorf("got %v, want level %s id %s", f, level, id)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Interned values are shared, so parsing a repeated value allocates
	// nothing but the map.
	raw := []byte(`{"level":"info","id":"u-1","n":1}`)
	allocs := testing.AllocsPerRun(200, func() {
		e := event.Event{Raw: raw}
		p.Parse(&e)
	})
	if allocs > 3 {
		t.Fatalf("%.0f allocations per parse of repeated values", allocs)
	}
}

// Issue 20: a line with a duplicate key (at any depth) is not RawJSON, so
// outputs write it from Fields, where the last value won; Elasticsearch
// would refuse the raw line. Lines without duplicates stay RawJSON.
func TestDuplicateKeysNormalised(t *testing.T) {
	full := New()
	sel := New()
	sel.SelectKeys([]string{"level"}, false)
	none := New()
	none.SelectKeys(nil, false)
	for _, tc := range []struct {
		line string
		dup  bool
		want string
	}{
		{`{"a":1,"b":2,"a":3}`, true, `{"a":3,"b":2}`},
		{`{"level":"x","n":{"k":1,"k":2}}`, true, `{"level":"x","n":{"k":2}}`},
		{`{"l":[{"x":1,"y":2,"x":3}]}`, true, `{"l":[{"x":3,"y":2}]}`},
		{`{"ab":1,"ba":2,"a":{"ab":1},"b":{"ab":2}}`, false, ``}, // same hashes, no duplicate
		{`{"level":"info","a":{"b":1},"b":{"a":1}}`, false, ``},
	} {
		for name, p := range map[string]*Parser{"full": full, "selected": sel, "validate-only": none} {
			e := &event.Event{Raw: []byte(tc.line)}
			p.Parse(e)
			if e.Has(event.ParseFailed) {
				t.Fatalf("%s %s: %v", name, tc.line, e.Fields)
			}
			if e.Has(event.RawJSON) == tc.dup {
				t.Errorf("%s %s: RawJSON %v", name, tc.line, e.Has(event.RawJSON))
				continue
			}
			got := string(event.AppendJSON(nil, e))
			if tc.dup && got != tc.want {
				t.Errorf("%s %s: written %s, want %s", name, tc.line, got, tc.want)
			}
			if !tc.dup && got != tc.line {
				t.Errorf("%s %s: written %s, want the line verbatim", name, tc.line, got)
			}
		}
	}
}

// Small integers (status codes, milliseconds) come boxed from a table: a
// selected one costs no allocation, and values and types are unchanged.
func TestSmallIntegersNoAllocation(t *testing.T) {
	p := New()
	p.SelectKeys([]string{"status", "n"}, false)
	raw := []byte(`{"status":503,"n":1023,"msg":"x"}`)
	var e event.Event
	allocs := testing.AllocsPerRun(100, func() {
		e = event.Event{Raw: raw}
		p.Parse(&e)
	})
	if allocs != 0 {
		t.Errorf("%v allocations a line", allocs)
	}
	for _, c := range []struct {
		line string
		want any
	}{
		{`{"n":0}`, int64(0)}, {`{"n":255}`, int64(255)}, {`{"n":256}`, int64(256)}, {`{"n":1023}`, int64(1023)},
		{`{"n":1024}`, int64(1024)}, {`{"n":-1}`, int64(-1)}, {`{"n":-1023}`, int64(-1023)}, {`{"n":-0}`, int64(0)},
		{`{"n":503.0}`, 503.0}, {`{"n":5e2}`, 500.0},
	} {
		e := parse(p, c.line)
		if v, _ := e.Known("n"); !reflect.DeepEqual(v, c.want) {
			t.Errorf("%s: %#v, want %#v", c.line, v, c.want)
		}
	}
}
