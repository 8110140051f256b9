package docker

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
)

func TestDecode(t *testing.T) {
	ts, stream, partial, text, reason := Decode([]byte(`{"log":"hi \"x\"\n","stream":"stderr","time":"2026-11-25T10:00:00.5Z"}`))
	if reason != "" || stream != "stderr" || partial || string(text) != `hi "x"` || ts.Nanosecond() != 5e8 {
		t.Fatal(ts, stream, partial, text, reason)
	}
	if _, _, partial, text, _ := Decode([]byte(`{"log":"part","stream":"stdout"}`)); !partial || string(text) != "part" {
		t.Fatal(partial, text)
	}
	for line, want := range map[string]string{
		`{"stream":"stdout"}`:              `docker: no "log" string`,
		`{"log":1}`:                        `docker: no "log" string`,
		`{"log":"x\n","time":"yesterday"}`: "docker: invalid time",
		`nope`:                             "docker: json: invalid character 'n' at offset 0",
	} {
		if _, _, _, _, reason := Decode([]byte(line)); reason != want {
			t.Errorf("%s: %q, want %q", line, reason, want)
		}
	}
}

// FuzzDocker: pieces of two streams, split anywhere, must come out whole.
func FuzzDocker(f *testing.F) {
	f.Add([]byte("hello\nworld"), []byte("err\n"), uint8(3))
	f.Add([]byte("\xff\xfe\n"), []byte(""), uint8(1))
	f.Fuzz(func(t *testing.T, out, errs []byte, cut uint8) {
		a := New(0)
		var events []*event.Event
		want := map[string][]byte{}
		n := int(cut%32) + 1
		for i := 0; i < max(len(out), len(errs)); i += n {
			for _, s := range []struct {
				b    []byte
				name string
			}{{out, "stdout"}, {errs, "stderr"}} {
				if i >= len(s.b) {
					continue
				}
				piece := string(s.b[i:min(i+n, len(s.b))])
				want[s.name] = append(want[s.name], decodeString(t, piece)...)
				line, _ := json.Marshal(map[string]string{"log": piece, "stream": s.name})
				e := &event.Event{Raw: line}
				events = a.Push(e, events)
			}
		}
		events = a.Flush(events)
		got := map[string][]byte{}
		for _, e := range events {
			if e.Has(event.ParseFailed) {
				t.Fatalf("failed: %v", e.Fields)
			}
			got[e.Stream] = append(got[e.Stream], e.Raw...)
			got[e.Stream] = append(got[e.Stream], '\n')
		}
		// Every byte of every piece (as the runtime encoded it) comes out,
		// in order, and a newline ends an event exactly where the
		// application wrote it (issue 20: boundaries, not only bytes); a
		// last piece without a newline (a partial at the end of the file)
		// is one event at Flush.
		for _, name := range []string{"stdout", "stderr"} {
			w := want[name]
			if len(w) > 0 && w[len(w)-1] != '\n' {
				w = append(w, '\n')
			}
			if !bytes.Equal(got[name], w) {
				t.Fatalf("%s: events %q, want %q", name, got[name], w)
			}
		}
	})
}

// decodeString is what a JSON round trip makes of s (invalid UTF-8 becomes
// U+FFFD, as Docker writes it).
func decodeString(t *testing.T, s string) []byte {
	var out string
	b, _ := json.Marshal(s)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return []byte(out)
}

// Issue 14: a partial piece with no final one is emitted flush_timeout
// after it came.
func TestFlushTimeout(t *testing.T) {
	a := NewWithTimeout(1024, time.Second)
	now := time.Unix(1000, 0)
	a.SetClock(func() time.Time { return now })
	e := &event.Event{Raw: []byte(`{"log":"fatal: no newline","stream":"stderr","time":"2026-11-25T10:00:00Z"}`)}
	e.SetAck(event.NewAck(1, nil))
	if out := a.Push(e, nil); len(out) != 0 {
		t.Fatal("a partial emitted at once")
	}
	if out := a.Expire(time.Unix(1000, 999e6), nil); len(out) != 0 {
		t.Fatal("emitted before flush_timeout")
	}
	out := a.Expire(time.Unix(1001, 0), nil)
	if len(out) != 1 || string(out[0].Raw) != "fatal: no newline" {
		t.Fatalf("%d events", len(out))
	}
}
