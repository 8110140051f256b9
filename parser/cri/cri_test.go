package cri

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
)

func TestDecode(t *testing.T) {
	ts, stream, partial, text, reason := Decode([]byte("2026-11-25T10:00:00.123456789Z stderr P:extra hello world "))
	if reason != "" || stream != "stderr" || !partial || string(text) != "hello world " ||
		!ts.Equal(time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)) {
		t.Fatal(ts, stream, partial, text, reason)
	}
	if _, _, _, text, reason := Decode([]byte("2026-11-25T10:00:00Z stdout F")); reason != "" || len(text) != 0 {
		t.Fatal(text, reason)
	}
	for line, want := range map[string]string{
		"nospace":                          "cri: not a CRI log line",
		"yesterday stdout F x":             `cri: invalid time "yesterday"`,
		"2026-11-25T10:00:00Z stdin F x":   "cri: invalid stream",
		"2026-11-25T10:00:00Z stdout X x":  `cri: invalid tag "X"`,
		"2026-11-25T10:00:00Z stdout  x":   `cri: invalid tag ""`,
		"2026-11-25T10:00:00Z stdoutF x y": "cri: invalid stream",
	} {
		if _, _, _, _, reason := Decode([]byte(line)); reason != want {
			t.Errorf("%q: %q, want %q", line, reason, want)
		}
	}
}

func push(a *Assembler, lines ...string) []*event.Event {
	var out []*event.Event
	for i, l := range lines {
		e := &event.Event{Raw: []byte(l), Pos: event.Position{Offset: int64(i)}}
		e.SetAck(event.NewAck(1, nil))
		out = a.Push(e, out)
	}
	return out
}

func TestSplitAt16KiB(t *testing.T) {
	text := strings.Repeat("0123456789abcdef", 3*1024+10) // 3 full 16 KiB pieces and a bit
	var lines []string
	for i := 0; i < len(text); i += 16384 {
		tag, end := "P", min(i+16384, len(text))
		if end == len(text) {
			tag = "F"
		}
		lines = append(lines, "2026-11-25T10:00:00Z stdout "+tag+" "+text[i:end])
	}
	out := push(New(1<<20), lines...)
	if len(out) != 1 || string(out[0].Raw) != text || out[0].Stream != "stdout" || out[0].Pos.Offset != int64(len(lines)-1) {
		t.Fatalf("%d events", len(out))
	}
	out = push(New(20000), lines...)
	if len(out) != 1 || len(out[0].Raw) != 20000 || !out[0].Has(event.Truncated) || string(out[0].Raw) != text[:20000] {
		t.Fatalf("cut: %d events", len(out))
	}
}

// FuzzCRI feeds arbitrary lines; every stream's text must come out whole
// and in order (no bound here), and bad lines keep their raw bytes.
func FuzzCRI(f *testing.F) {
	f.Add([]byte("2026-11-25T10:00:00Z stdout P a\n2026-11-25T10:00:00Z stderr F b\n2026-11-25T10:00:00Z stdout F c\n"))
	f.Add([]byte("2026-11-25T10:00:00.1Z stdout F {\"a\":1}\nnot cri\n"))
	f.Add([]byte("2026-11-25T10:00:00Z stdout P:x \xff\n"))
	f.Add([]byte("2026-11-25T10:00:00Z stdout P a\n2026-11-25T10:00:00Z stdout P b")) // P at end of file
	f.Add([]byte("2026-11-25T10:00:00Z stdout P a\n2026-11-25T10:00:00Z stderr P x\n2026-11-25T10:00:00Z stdout F b\n2026-11-25T10:00:00Z stderr P y\n"))
	f.Fuzz(func(t *testing.T, input []byte) {
		a := New(0)
		// The model: per stream, P pieces join until an F ends the event;
		// pieces still pending at the end of the file (a P last) are one
		// event at Flush. Issue 20: check the boundaries, not only the
		// bytes.
		want := map[string][]string{}
		pending := map[string]*bytes.Buffer{}
		var out []*event.Event
		for _, line := range bytes.Split(input, []byte("\n")) {
			if _, stream, partial, text, reason := Decode(line); reason == "" {
				if pending[stream] == nil {
					pending[stream] = &bytes.Buffer{}
				}
				pending[stream].Write(text)
				if !partial {
					want[stream] = append(want[stream], pending[stream].String())
					pending[stream] = nil
				}
			}
			e := &event.Event{Raw: line}
			out = a.Push(e, out)
			if e.Has(event.ParseFailed) && e.Fields["message"] != string(line) {
				t.Fatal("raw line lost")
			}
		}
		for stream, b := range pending {
			if b != nil {
				want[stream] = append(want[stream], b.String())
			}
		}
		out = a.Flush(out)
		got := map[string][]string{}
		for _, e := range out {
			if !e.Has(event.ParseFailed) {
				got[e.Stream] = append(got[e.Stream], string(e.Raw))
			}
		}
		for _, s := range []string{"stdout", "stderr"} {
			if len(got[s]) != len(want[s]) {
				t.Fatalf("%s: %d events %q, want %d %q", s, len(got[s]), got[s], len(want[s]), want[s])
			}
			for i := range want[s] {
				if got[s][i] != want[s][i] {
					t.Fatalf("%s event %d: %q, want %q", s, i, got[s][i], want[s][i])
				}
			}
		}
	})
}

func BenchmarkCRIDecode(b *testing.B) {
	line := []byte(`2026-11-25T10:00:00.123456789Z stdout F {"ts":"2026-11-25T10:00:00.123Z","level":"info","msg":"request served","service":"checkout","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user_id":12345,"latency_ms":12.5,"path":"/api/v1/orders","status":200}`)
	a := New(1 << 20)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	var out []*event.Event
	for b.Loop() {
		e := event.Event{Raw: line}
		out = a.Push(&e, out[:0])
	}
}

// Issue 14: the last partial piece of a container that exited has no F
// piece: it is emitted as it is flush_timeout after it came, per stream.
func TestFlushTimeout(t *testing.T) {
	a := NewWithTimeout(1024, 2*time.Second)
	now := time.Unix(1000, 0)
	a.SetClock(func() time.Time { return now })
	out := push(a, "2026-11-25T10:00:00Z stderr P panic: last words")
	now = now.Add(time.Second)
	out = push(a, "2026-11-25T10:00:01Z stdout P half a line", "2026-11-25T10:00:01Z stdout P more")
	if len(out) != 0 {
		t.Fatal("emitted before flush_timeout")
	}
	if d, ok := a.Deadline(); !ok || !d.Equal(time.Unix(1002, 0)) {
		t.Fatalf("deadline %v %v", d, ok)
	}
	out = a.Expire(time.Unix(1002, 0), nil)
	if len(out) != 1 || string(out[0].Raw) != "panic: last words" || out[0].Stream != "stderr" {
		t.Fatalf("%d events", len(out))
	}
	if d, ok := a.Deadline(); !ok || !d.Equal(time.Unix(1003, 0)) {
		t.Fatalf("deadline %v %v", d, ok)
	}
	out = a.Expire(time.Unix(1003, 0), out[:0])
	if len(out) != 1 || string(out[0].Raw) != "half a linemore" {
		t.Fatalf("%d events", len(out))
	}
	if _, ok := a.Deadline(); ok {
		t.Fatal("deadline with nothing pending")
	}
}

// parseUTC gives what time.Parse(RFC3339Nano) gives for kubelet's form and
// declines (ok false) everything else, which Decode hands to time.Parse.
func TestParseUTCMatchesTimeParse(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 22))
	var cases []string
	for range 20000 {
		y := rng.IntN(10000)
		m := 1 + rng.IntN(12)
		d := 1 + rng.IntN(31)
		s := fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d", y, m, d, rng.IntN(25), rng.IntN(61), rng.IntN(61))
		if k := rng.IntN(11); k > 0 {
			frac := fmt.Sprintf("%09d", rng.IntN(1e9))
			if rng.IntN(4) == 0 {
				frac = frac[:k%9] + "000000000"[:9-k%9] // trailing zeros
			}
			s += "." + frac[:min(k, 9)]
		}
		switch rng.IntN(10) {
		case 0:
			s += "+02:00"
		case 1:
			s += "z"
		default:
			s += "Z"
		}
		cases = append(cases, s)
	}
	cases = append(cases, "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2000-02-29T23:59:59.999999999Z",
		"2024-04-31T00:00:00Z", "2024-12-31T24:00:00Z", "2024-12-31T23:60:00Z", "2024-12-31T23:59:60Z", "2024-12-31T23:59:59.Z",
		"2024-12-31T23:59:59.1234567890Z", "2024-1a-31T23:59:59Z", "+024-12-31T23:59:59Z", "2024-12-31 23:59:59Z", "2024-12-31T23:59:59",
		"0000-01-01T00:00:00Z", "9999-12-31T23:59:59.000000001Z", "2024-00-10T00:00:00Z", "2024-10-00T00:00:00Z")
	fast := 0
	for _, s := range cases {
		got, ok := parseUTC([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if !ok {
			if err == nil && strings.HasSuffix(s, "Z") && len(s) <= 30 {
				t.Fatalf("%s: kubelet's form, declined by parseUTC", s)
			}
			continue
		}
		fast++
		if err != nil {
			t.Fatalf("%s: parseUTC accepted what time.Parse refuses (%v)", s, err)
		}
		if got != want {
			t.Fatalf("%s: parseUTC %v (%s), time.Parse %v (%s)", s, got, got.Location(), want, want.Location())
		}
	}
	if fast < len(cases)/3 {
		t.Fatalf("only %d of %d taken by parseUTC", fast, len(cases))
	}
}
