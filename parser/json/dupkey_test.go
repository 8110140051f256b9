package json

import (
	"bytes"
	stdjson "encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sidelog/sidelog/event"
)

// dupModes are the three ways a line is parsed: full, a selection (whose
// top-level object is scanned with the selection's keys, the rest
// skipped) and validation only (everything skipped).
func dupModes() map[string]*Parser {
	sel := New()
	sel.SelectKeys([]string{"level", "a"}, false)
	none := New()
	none.SelectKeys(nil, false)
	return map[string]*Parser{"full": New(), "selected": sel, "validate-only": none}
}

// checkDup parses line in every mode and asserts that it is RawJSON
// exactly when it has no duplicate key, and that what an output writes is
// the line verbatim, or else a normalised object (last value wins) that
// encoding/json reads as it reads the line and that has no duplicate.
func checkDup(t *testing.T, line string, dup bool) {
	t.Helper()
	var std map[string]any
	if err := stdjson.Unmarshal([]byte(line), &std); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	for name, p := range dupModes() {
		e := parse(p, line)
		if e.Has(event.ParseFailed) {
			t.Fatalf("%s %s: %v", name, line, e.Fields)
		}
		if e.Has(event.RawJSON) == dup {
			t.Errorf("%s %.80s: RawJSON %v, want %v", name, line, e.Has(event.RawJSON), !dup)
			continue
		}
		out := event.AppendJSON(nil, e)
		if !dup {
			if string(out) != line {
				t.Errorf("%s %.80s: written %.80s, want the line verbatim", name, line, out)
			}
			continue
		}
		var got map[string]any
		if err := stdjson.Unmarshal(out, &got); err != nil || !reflect.DeepEqual(got, std) {
			t.Errorf("%s %.80s: written %.80s (%v), want %v", name, line, out, err, std)
		}
		if again := parse(New(), string(out)); !again.Has(event.RawJSON) {
			t.Errorf("%s %.80s: written %.80s still has a duplicate", name, line, out)
		}
	}
}

// Issue 20: what counts as a duplicate. Keys are compared decoded, as the
// full parse stores them in the map and as Elasticsearch reads them: "a"
// and "\u0061" are the same key. Every place a key can be, and every way
// a key is read (short, 8 to 16 bytes, longer, near the end of the line,
// with escapes, not ASCII), in every parsing mode.
func TestDuplicateKeyEdges(t *testing.T) {
	long := strings.Repeat("k", 40)
	for _, c := range []struct {
		line string
		dup  bool
	}{
		{`{"a":1,"b":2,"a":3}`, true},
		{`{"a":1,"b":2}`, false},
		{`{"":1,"":2}`, true},
		{`{"":1,"a":2}`, false},
		// escapes: decoded keys compare
		{`{"a":1,"\u0061":2}`, true},
		{`{"level":"x","n":{"\"":1,"\u0022":2}}`, true},
		{`{"n":{"a\\b":1,"a\u005cb":2}}`, true},
		{`{"n":{"a\\b":1,"a\\c":2}}`, false},
		{`{"a":1,"\u0062":2}`, false},
		{`{"n":{"\ud800":1,"\ufffd":2}}`, true}, // a lone surrogate decodes to U+FFFD
		{`{"n":{"\/":1,"/":2}}`, true},
		// depth, arrays, and objects a selection skips or builds
		{`{"a":[{"b":{"c":{"d":1,"d":2}}}]}`, true},
		{`{"level":{"x":1,"x":2}}`, true},
		{`{"z":[[{"x":1}],{"y":{"x":1,"y":2}}]}`, false},
		{`{"a":{"b":1},"b":{"a":1},"c":{"a":1,"b":2}}`, false},
		// a new shape is compared by a rescan: values with escapes,
		// brackets and quotes inside strings, nested values, white space
		{`{"n":{"v":"q\"uote","w":"back\\","x":"\u0022","v":1}}`, true},
		{`{"n":{"v":"q\"uote","w":"back\\\\","x":[{"y":"}\"]"}],"z":1}}`, false},
		{`{"n":{"v":"q\"uote","w":"back\\\\","x":[{"y":"}\"]"}],"v":1}}`, true},
		{"{ \"n\" : { \"a\" : [ 1 , { } ] ,\t\"b\" : -1.5e3 , \"a\" : null } }", true},
		{"{ \"n\" : { \"a\" : [ 1 , { } ] ,\t\"b\" : -1.5e3 , \"c\" : true } }", false},
		// near the end of the line (read byte by byte) and mid-line
		{`{"ab":1,"ab":2}`, true},
		{`{"x":{"a":1,"a":2}}`, true},
		{`{"ab":1,"cd":22222222,"cd":2}`, true},
		// 8 to 16 bytes: first and last 8 bytes, and the length
		{`{"aaaaaaaa":1,"aaaaaaaaa":2}`, false},
		{`{"n":{"trace_id":1,"span_id":2,"trace_id":3}}`, true},
		{`{"n":{"abcdefghijklmnop":1,"abcdefghijklmnop":2}}`, true},
		{`{"n":{"abcdefghXjklmnop":1,"abcdefghYjklmnop":2}}`, false},
		// longer: the middle counts
		{`{"n":{"aaaaaaaaXbbbbbbbbcc":1,"aaaaaaaaYbbbbbbbbcc":2}}`, false},
		{`{"n":{"aaaaaaaaXbbbbbbbbcc":1,"k":0,"aaaaaaaaXbbbbbbbbcc":2}}`, true},
		{`{"n":{"` + long + `":1,"` + long + `":2}}`, true},
		// not ASCII
		{`{"n":{"é":1,"é":2}}`, true},
		{`{"n":{"é":1,"e":2}}`, false},
		{`{"n":{"日本語のキー":1,"日本語のキ":2}}`, false},
	} {
		checkDup(t, c.line, c.dup)
	}
}

// manyKeys is an object of n distinct keys, plus a repeat of key dup when
// dup >= 0, inside a line.
func manyKeys(n, dup int) string {
	var b strings.Builder
	b.WriteString(`{"level":"info","m":{`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"key_%d":%d`, i*7919%1000, i)
	}
	if dup >= 0 {
		fmt.Fprintf(&b, `,"key_%d":-1`, dup*7919%1000)
	}
	b.WriteString(`}}`)
	return b.String()
}

// More keys than any small set holds: compared sorted, still exact.
func TestDuplicateKeyManyKeys(t *testing.T) {
	for _, n := range []int{16, 17, 65, 300} {
		checkDup(t, manyKeys(n, -1), false)
		checkDup(t, manyKeys(n, 0), true)
		checkDup(t, manyKeys(n, n/2), true)
		checkDup(t, manyKeys(n, n-1), true)
	}
	// escaped keys among many: compared decoded
	line := strings.Replace(manyKeys(40, -1), `"key_0"`, `"key_\u0030"`, 1)
	checkDup(t, line, false)
	checkDup(t, strings.Replace(line, `}}`, `,"key_0":1}}`, 1), true)
}

// A key list is remembered with its answer, so the next line of the same
// shape is not compared again (that is what keeps lines without
// duplicates as fast as before); a list with one key different is
// compared; a key read byte by byte (near the end of the line) has the
// same signature as when read 8 bytes at once; a list with an escaped key
// is compared every time.
func TestDuplicateKeyShapes(t *testing.T) {
	p := New()
	p.SelectKeys(nil, false)
	var n int
	testHookCheck = func() { n++ }
	defer func() { testHookCheck = nil }()
	checks := func(line string) (int, bool) {
		n = 0
		e := parse(p, line)
		if e.Has(event.ParseFailed) {
			t.Fatal(line, e.Fields)
		}
		return n, e.Has(event.RawJSON)
	}
	line := `{"level":"info","shape_test":{"alpha":1,"beta_gamma":2,"a_key_longer_than_16":3}}`
	checks(line)
	if n, raw := checks(line); n != 0 || !raw {
		t.Fatalf("known shape: %d comparisons, RawJSON %v", n, raw)
	}
	dup := strings.Replace(line, `"a_key_longer_than_16":3`, `"a_key_longer_than_16":3,"alpha":4`, 1)
	if n, raw := checks(dup); n == 0 || raw {
		t.Fatalf("duplicate: %d comparisons, RawJSON %v", n, raw)
	}
	if n, raw := checks(dup); n != 0 || raw { // remembered as a duplicate shape
		t.Fatalf("known duplicate: %d comparisons, RawJSON %v", n, raw)
	}
	other := strings.Replace(line, `"beta_gamma"`, `"beta_gammb"`, 1)
	if n, raw := checks(other); n == 0 || !raw {
		t.Fatalf("other shape: %d comparisons, RawJSON %v", n, raw)
	}
	checks(`{"shape_ab":1,"cd":22222222}`)
	if n, raw := checks(`{"shape_ab":1,"cd":2}`); n != 0 || !raw {
		t.Fatalf("key near the end: %d comparisons, RawJSON %v", n, raw)
	}
	// escaped keys are never remembered: compared decoded every time
	esc := `{"shape_\u0061":1,"b":2}`
	checks(esc)
	if n, raw := checks(esc); n == 0 || !raw {
		t.Fatalf("escaped key: %d comparisons, RawJSON %v", n, raw)
	}
}

// stdDup reports whether line (valid JSON) has an object with a key twice,
// keys decoded by encoding/json.
func stdDup(line []byte) bool {
	d := stdjson.NewDecoder(bytes.NewReader(line))
	var stack []map[string]bool
	var inObj []bool // per open container: object?
	wantKey := func() bool { return len(inObj) > 0 && inObj[len(inObj)-1] }
	expectKey := true
	dup := false
	for {
		tok, err := d.Token()
		if err == io.EOF || err != nil {
			return dup
		}
		switch v := tok.(type) {
		case stdjson.Delim:
			switch v {
			case '{':
				stack = append(stack, map[string]bool{})
				inObj = append(inObj, true)
				expectKey = true
				continue
			case '[':
				inObj = append(inObj, false)
			case '}':
				stack = stack[:len(stack)-1]
				inObj = inObj[:len(inObj)-1]
			case ']':
				inObj = inObj[:len(inObj)-1]
			}
			expectKey = wantKey()
			continue
		case string:
			if wantKey() && expectKey {
				m := stack[len(stack)-1]
				dup = dup || m[v]
				m[v] = true
				expectKey = false
				continue
			}
		}
		expectKey = wantKey()
	}
}

// checkDupAgainstStdlib (fuzzing): every mode flags a line of valid UTF-8
// as having a duplicate key exactly when encoding/json sees one.
func checkDupAgainstStdlib(t *testing.T, line []byte) {
	if !stdjson.Valid(line) || !utf8.Valid(line) {
		return
	}
	if t := bytes.TrimLeft(line, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return
	}
	want := stdDup(line)
	for name, p := range dupModes() {
		e := &event.Event{Raw: append([]byte(nil), line...)}
		p.Parse(e)
		if e.Has(event.ParseFailed) || e.Has(event.InvalidUTF8) {
			continue // too deep; or invalid UTF-8 through an escape
		}
		if e.Has(event.RawJSON) == want {
			t.Fatalf("%s %q: RawJSON %v, encoding/json sees a duplicate: %v", name, line, e.Has(event.RawJSON), want)
		}
	}
}

func TestStdDup(t *testing.T) {
	for line, want := range map[string]bool{
		`{"a":1,"b":{"a":2}}`:           false,
		`{"a":1,"b":[{"c":1,"c":2}]}`:   true,
		`{"a":"a","b":"a"}`:             false,
		`{"a":[1,"a",{"a":1}],"b":1}`:   false,
		`{"a":{},"\u0061":1}`:           true,
		`{"x":[["a","a"]],"y":{"a":1}}`: false,
	} {
		if got := stdDup([]byte(line)); got != want {
			t.Errorf("%s: %v", line, got)
		}
	}
}

// A rescan walks nested values again, so 500 nested new shapes would cost
// 500 times the line: past a budget of bytes per line the line is taken
// as having a duplicate, uncompared (safe: it is written from its fields,
// the same object), and the work stays linear in the line.
func TestDuplicateKeyRescanBudget(t *testing.T) {
	const depth = 500
	var lb strings.Builder
	for k := range depth {
		fmt.Fprintf(&lb, `{"budget_%d":1,"a":`, k) // a new shape at every level
	}
	line := lb.String() + `{"b":1}` + strings.Repeat(`}`, depth)
	s := scanner{buf: []byte(line)}
	if end := s.skipObject(0); end != len(line) || s.err != errNone {
		t.Fatalf("skipObject: %d, %s", end, s.reason())
	}
	// every level is a new shape: the walks add up past the budget
	if !s.dup {
		t.Fatal("the budget did not stop the rescans of a deeply nested line")
	}
	if budget := rescanBudget(len(line)); s.rescanned > budget+len(line) {
		t.Fatalf("walked %d bytes again, budget %d", s.rescanned, budget)
	}
	var std map[string]any
	if err := stdjson.Unmarshal([]byte(line), &std); err != nil {
		t.Fatal(err)
	}
	for name, p := range dupModes() {
		e := parse(p, line)
		if e.Has(event.ParseFailed) {
			t.Fatalf("%s: %v", name, e.Fields)
		}
		var got map[string]any
		if err := stdjson.Unmarshal(event.AppendJSON(nil, e), &got); err != nil || !reflect.DeepEqual(got, std) {
			t.Fatalf("%s: written differs (%v)", name, err)
		}
	}
	// A shallow line of new shapes stays within the budget.
	s = scanner{buf: []byte(manyKeys(300, -1))}
	s.skipObject(0)
	if s.dup || s.rescanned > 2*len(s.buf) {
		t.Fatalf("dup %v, walked %d bytes again for a %d-byte line", s.dup, s.rescanned, len(s.buf))
	}
}
