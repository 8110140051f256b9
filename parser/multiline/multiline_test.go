package multiline

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newAsm(t testing.TB, cfg parser.MultilineConfig, max int) (*Assembler, *clock) {
	t.Helper()
	f, err := New(cfg, max)
	if err != nil {
		t.Fatal(err)
	}
	a := f().(*Assembler)
	c := &clock{t: time.Unix(1000, 0)}
	a.now = c.now
	return a, c
}

func ev(s string) *event.Event {
	e := &event.Event{Raw: []byte(s)}
	e.SetAck(event.NewAck(1, nil))
	return e
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  parser.MultilineConfig
		want string
	}{
		{parser.MultilineConfig{}, "multiline: set preset (go, java, python) or start"},
		{parser.MultilineConfig{Preset: "java", Start: "x"}, "multiline: set either preset or start, not both"},
		{parser.MultilineConfig{Preset: "ruby"}, `multiline.preset: unknown preset "ruby" (known: go, java, python)`},
		{parser.MultilineConfig{Start: "("}, "multiline.start: error parsing regexp: missing closing ): `(`"},
		{parser.MultilineConfig{Start: "x", Timeout: -time.Second}, "multiline.timeout: must not be negative"},
	} {
		errs := Validate(c.cfg)
		if len(errs) != 1 || errs[0].Error() != c.want {
			t.Errorf("%+v: %v", c.cfg, errs)
		}
	}
	if errs := Validate(parser.MultilineConfig{Preset: "go"}); errs != nil {
		t.Error(errs)
	}
}

func TestTimeoutFlush(t *testing.T) {
	a, c := newAsm(t, parser.MultilineConfig{Start: `^\S`, Timeout: 2 * time.Second}, 0)
	if _, ok := a.Deadline(); ok {
		t.Fatal("deadline with nothing pending")
	}
	out := a.Push(ev("start"), nil)
	c.t = c.t.Add(time.Second)
	out = a.Push(ev("  more"), out)
	if len(out) != 0 {
		t.Fatal("emitted too early")
	}
	d, ok := a.Deadline()
	if !ok || !d.Equal(c.t.Add(2*time.Second)) {
		t.Fatalf("deadline %v %v: want 2s after the last line", d, ok)
	}
	out = a.Flush(out)
	if len(out) != 1 || string(out[0].Raw) != "start\n  more" {
		t.Fatalf("%d events", len(out))
	}
	if _, ok := a.Deadline(); ok {
		t.Fatal("deadline after flush")
	}
}

func TestDefaultTimeout(t *testing.T) {
	a, c := newAsm(t, parser.MultilineConfig{Preset: "java"}, 0)
	a.Push(ev("x"), nil)
	if d, _ := a.Deadline(); !d.Equal(c.t.Add(DefaultTimeout)) {
		t.Fatal(d)
	}
}

// FuzzMultiline: whatever the lines, every byte comes out in order (no
// bound), each event's acks are released exactly once, nothing panics.
func FuzzMultiline(f *testing.F) {
	f.Add([]byte("ERROR x\njava.lang.X: y\n\tat a.b(C.java:1)\n... 2 more\nnext"), uint8(0))
	f.Add([]byte("panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/x.go:1\n\nexit status 2\nok"), uint8(1))
	f.Add([]byte("E\nTraceback (most recent call last):\n  File \"x\"\nValueError: v\n\nDuring handling of the above exception\n\n\nnext"), uint8(2))
	f.Add([]byte("2026 a\n b\n\n2026 c"), uint8(3))
	cfgs := []parser.MultilineConfig{{Preset: "java"}, {Preset: "go"}, {Preset: "python"}, {Start: `^\d`}}
	f.Fuzz(func(t *testing.T, input []byte, which uint8) {
		a, _ := newAsm(t, cfgs[int(which)%len(cfgs)], 0)
		lines := bytes.Split(input, []byte("\n"))
		released := 0
		var out []*event.Event
		for _, l := range lines {
			e := &event.Event{Raw: l}
			e.SetAck(event.NewAck(1, func() { released++ }))
			out = a.Push(e, out)
		}
		out = a.Flush(out)
		var raws [][]byte
		for _, e := range out {
			raws = append(raws, e.Raw)
			e.Done()
		}
		if got := bytes.Join(raws, []byte("\n")); !bytes.Equal(got, input) {
			t.Fatalf("%q != %q", got, input)
		}
		if released != len(lines) {
			t.Fatalf("released %d of %d", released, len(lines))
		}
	})
}

func TestBoundedGroup(t *testing.T) {
	a, _ := newAsm(t, parser.MultilineConfig{Preset: "java"}, 100)
	var out []*event.Event
	out = a.Push(ev("ERROR failed"), out)
	for i := 0; i < 50; i++ {
		out = a.Push(ev("\tat com.example.Frame.f(F.java:1)"), out)
	}
	out = a.Push(ev("INFO next"), out)
	if len(out) != 1 || len(out[0].Raw) != 100 || !out[0].Has(event.Truncated) || !strings.HasPrefix(string(out[0].Raw), "ERROR failed\n\tat ") {
		t.Fatalf("%d events", len(out))
	}
}

func BenchmarkJavaPreset(b *testing.B) {
	a, _ := newAsm(b, parser.MultilineConfig{Preset: "java"}, 1<<20)
	line := []byte(`2026-11-25 10:00:00.123 INFO [main] c.e.App - request served service=checkout trace_id=4bf92f3577b34da6a3ce929d0e0e4736 user_id=12345 latency_ms=12.5 path=/api/v1/orders status=200`)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	var out []*event.Event
	for b.Loop() {
		e := &event.Event{Raw: line}
		out = a.Push(e, out[:0])
	}
}

// Issue 14: a group of a never-ending trace ends at max_lines: it is
// emitted whole, the next line starts a new group, and no byte is lost.
func TestMaxLines(t *testing.T) {
	a, _ := newAsm(t, parser.MultilineConfig{Preset: "java", MaxLines: 3}, 0)
	var out []*event.Event
	out = a.Push(ev("ERROR failed"), out)
	for i := 0; i < 5; i++ {
		out = a.Push(ev("\tat F.f(F.java:1)"), out)
	}
	out = a.Flush(out)
	var got []string
	for _, e := range out {
		got = append(got, string(e.Raw))
	}
	want := []string{"ERROR failed\n\tat F.f(F.java:1)\n\tat F.f(F.java:1)", "\tat F.f(F.java:1)\n\tat F.f(F.java:1)\n\tat F.f(F.java:1)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("%q", got)
	}
	if n := a.TakeLost(); n != 0 {
		t.Fatalf("%d bytes counted lost without a cut", n)
	}
}

// Issue 14: a group whose lines keep coming, each within timeout, ends at
// max_age after its first line: Deadline says so, Expire emits it, and a
// line pushed after max_age starts a new group.
func TestMaxAge(t *testing.T) {
	a, c := newAsm(t, parser.MultilineConfig{Start: `^\S`, Timeout: time.Second, MaxAge: 3 * time.Second}, 0)
	t0 := c.t
	out := a.Push(ev("start"), nil)
	for i := 0; i < 2; i++ {
		c.t = c.t.Add(800 * time.Millisecond)
		out = a.Push(ev(" more"), out)
	}
	c.t = c.t.Add(800 * time.Millisecond) // 2.4s: the timeout is sooner
	out = a.Push(ev(" more"), out)
	if d, ok := a.Deadline(); !ok || !d.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("deadline %v, want max_age after the first line", d)
	}
	if out = a.Expire(t0.Add(2900*time.Millisecond), out); len(out) != 0 {
		t.Fatal("expired before max_age")
	}
	if out = a.Expire(t0.Add(3*time.Second), out); len(out) != 1 || string(out[0].Raw) != "start\n more\n more\n more" {
		t.Fatalf("%d events", len(out))
	}
	// pushed past max_age: the group ends before the line
	c.t = t0.Add(10 * time.Second)
	out = a.Push(ev("next"), out[:0])
	c.t = c.t.Add(3500 * time.Millisecond)
	out = a.Push(ev(" cont"), out)
	if len(out) != 1 || string(out[0].Raw) != "next" {
		t.Fatalf("%d events", len(out))
	}
	if out = a.Flush(out[:0]); len(out) != 1 || string(out[0].Raw) != " cont" {
		t.Fatalf("%d events", len(out))
	}
}

func TestMaxLinesAgeValidated(t *testing.T) {
	errs := Validate(parser.MultilineConfig{Start: "x", MaxLines: -1, MaxAge: -time.Second})
	if len(errs) != 2 || errs[0].Error() != "multiline.max_lines: must not be negative" || errs[1].Error() != "multiline.max_age: must not be negative" {
		t.Fatal(errs)
	}
}

// Issue 14: the bytes a cut at max_line_bytes gives up are reported.
func TestGroupCutLost(t *testing.T) {
	a, _ := newAsm(t, parser.MultilineConfig{Preset: "java"}, 20)
	out := a.Push(ev("ERROR failed"), nil) // 12 bytes
	out = a.Push(ev("\tat F.f()"), out)    // "\n" + 7 of 9 bytes kept
	out = a.Flush(out)
	if len(out) != 1 || len(out[0].Raw) != 20 {
		t.Fatalf("%d events", len(out))
	}
	if n := a.TakeLost(); n != 2 {
		t.Fatalf("lost %d, want 2", n)
	}
}
