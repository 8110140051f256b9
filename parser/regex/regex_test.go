package regex

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/sidelog/sidelog/event"
)

const pattern = `^(?P<time>\S+) (?P<level>\w+) (?:\[(?P<thread>[^\]]*)\] )?(?P<msg>.*)$`

func TestNew(t *testing.T) {
	if _, err := New(`^(\S+) (.*)$`); err != ErrNoNamedGroups {
		t.Fatalf("unnamed groups: %v", err)
	}
	if _, err := New(`(?P<a>`); err == nil {
		t.Fatal("bad pattern accepted")
	}
	if _, err := New(``); err == nil {
		t.Fatal("empty pattern accepted")
	}
}

func TestParse(t *testing.T) {
	p, err := New(pattern)
	if err != nil {
		t.Fatal(err)
	}
	e := &event.Event{Raw: []byte("2026-11-25T10:00:00Z INFO started")}
	p.Parse(e)
	want := map[string]any{"time": "2026-11-25T10:00:00Z", "level": "INFO", "msg": "started"}
	if !reflect.DeepEqual(e.Fields, want) {
		t.Fatalf("%#v (thread did not take part: absent)", e.Fields)
	}
	e = &event.Event{Raw: []byte("nope")}
	p.Parse(e)
	if !e.Has(event.ParseFailed) || e.Fields["message"] != "nope" {
		t.Fatal(e.Fields)
	}
}

func FuzzRegex(f *testing.F) {
	p, err := New(`^(?P<time>\S+) (?P<level>\w+) (?P<msg>.*)$`)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"2026-11-25T10:00:00Z INFO started", "x y", "a b \xff", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		orig := bytes.Clone(line)
		e := &event.Event{Raw: line}
		p.Parse(e)
		if e.Has(event.ParseFailed) {
			if e.Fields["message"] != string(orig) {
				t.Fatal("raw line lost")
			}
			return
		}
		// The groups cover the whole line: nothing is lost.
		got := e.Fields["time"].(string) + " " + e.Fields["level"].(string) + " " + e.Fields["msg"].(string)
		if got != string(orig) {
			t.Fatalf("%q != %q", got, orig)
		}
	})
}

func BenchmarkRegex(b *testing.B) {
	p, err := New(pattern)
	if err != nil {
		b.Fatal(err)
	}
	line := []byte(`2026-11-25T10:00:00.123Z INFO [http-nio-8080-exec-1] request served service=checkout trace_id=4bf92f3577b34da6a3ce929d0e0e4736 user_id=12345 latency_ms=12.5 path=/api/v1/orders status=200`)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		e := event.Event{Raw: line}
		p.Parse(&e)
	}
}
