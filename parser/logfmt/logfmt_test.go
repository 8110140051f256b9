package logfmt

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/event"
)

func TestDecode(t *testing.T) {
	cases := []struct {
		line   string
		want   map[string]any
		reason string
	}{
		{`a=1 b="two words" c`, map[string]any{"a": "1", "b": "two words", "c": true}, ""},
		{`  a=1   a=2  `, map[string]any{"a": "2"}, ""},
		{`msg="q\"b\\n\nt\tu\u00e9 x\q"`, map[string]any{"msg": "q\"b\\n\nt\tué x\\q"}, ""},
		{`empty= e2=""`, map[string]any{"empty": "", "e2": ""}, ""},
		{`k=v=w`, map[string]any{"k": "v=w"}, ""},
		{``, nil, "logfmt: no key=value pair"},
		{`only bare words`, nil, "logfmt: no key=value pair"},
		{`a="open`, nil, "logfmt: unterminated quoted value at offset 2"},
		{`=v`, nil, "logfmt: empty key at offset 0"},
		{`a"b=c`, nil, "logfmt: quote in key at offset 1"},
	}
	for _, c := range cases {
		m, reason := Decode([]byte(c.line))
		if reason != c.reason || (reason == "" && !reflect.DeepEqual(m, c.want)) {
			t.Errorf("%q: got %#v %q, want %#v %q", c.line, m, reason, c.want, c.reason)
		}
	}
}

func TestParseFailureKeepsLine(t *testing.T) {
	e := &event.Event{Raw: []byte(`a="open`)}
	Parser{}.Parse(e)
	if !e.Has(event.ParseFailed) || e.Fields["message"] != `a="open` {
		t.Fatal(e.Fields)
	}
}

func FuzzLogfmt(f *testing.F) {
	for _, s := range []string{`a=1 b="two words" c`, `msg="q\"b\\n"`, `=v`, `a="open`, "k=\xff\xfe"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		orig := bytes.Clone(line)
		e := &event.Event{Raw: line}
		Parser{}.Parse(e)
		if !bytes.Equal(line, orig) {
			t.Fatal("Raw modified")
		}
		if e.Has(event.ParseFailed) {
			if e.Fields["message"] != string(line) {
				t.Fatalf("raw line lost: %q", e.Fields["message"])
			}
			return
		}
		for k, v := range e.Fields {
			if k == "" || !strings.Contains(string(line), k) {
				t.Fatalf("key %q not in the line", k)
			}
			if s, ok := v.(string); ok && !bytes.ContainsRune(line, '\\') && !strings.Contains(string(line), k+"="+s) && !strings.Contains(string(line), k+`="`+s+`"`) {
				t.Fatalf("value %q of %q not in the line", s, k)
			}
		}
	})
}

func BenchmarkLogfmt(b *testing.B) {
	line := []byte(`ts=2026-11-25T10:00:00.123Z level=info msg="request served" service=checkout trace_id=4bf92f3577b34da6a3ce929d0e0e4736 user_id=12345 latency_ms=12.5 path=/api/v1/orders status=200`)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		e := event.Event{Raw: line}
		Parser{}.Parse(&e)
	}
}
