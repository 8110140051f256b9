package build

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/parser/cri"
	"github.com/sidelog/sidelog/plugins"

	_ "github.com/sidelog/sidelog/parser/docker"
	_ "github.com/sidelog/sidelog/parser/json"
	_ "github.com/sidelog/sidelog/parser/logfmt"
	_ "github.com/sidelog/sidelog/parser/none"
	_ "github.com/sidelog/sidelog/parser/regex"
)

func TestValidateMessages(t *testing.T) {
	ml := func(m parser.MultilineConfig) *parser.MultilineConfig { return &m }
	cases := []struct {
		cfg  parser.Config
		want []string
	}{
		{parser.Config{}, nil},
		{parser.Config{Parser: "jsn"}, []string{`parser: unknown parser "jsn" (known: cri, docker, json, logfmt, none, regex)`}},
		{parser.Config{Parser: "regex", Regex: `^(\S+)$`}, []string{"regex: pattern has no named groups"}},
		{parser.Config{Parser: "regex"}, []string{"regex: a pattern is required"}},
		{parser.Config{Parser: "regex", Regex: `(?P<a>`}, []string{"regex: error parsing regexp: missing closing ): `(?P<a>`"}},
		{parser.Config{Parser: "json", Regex: "x", InnerParser: "json"}, []string{"regex: only used with parser: regex", "inner_parser: only used with parser: cri or docker"}},
		{parser.Config{Parser: "cri", InnerParser: "docker"}, []string{`inner_parser: "docker" cannot parse a container's text (known: json, logfmt, none, regex)`}},
		{parser.Config{Parser: "docker", InnerParser: "regex", InnerRegex: "(x)"}, []string{"inner_regex: pattern has no named groups"}},
		{parser.Config{Parser: "cri", InnerRegex: "(?P<x>.)"}, []string{"inner_regex: only used with inner_parser: regex"}},
		{parser.Config{Multiline: &parser.MultilineConfig{Start: "("}}, []string{"multiline.start: error parsing regexp: missing closing ): `(`"}},
		{parser.Config{Multiline: ml(parser.MultilineConfig{Preset: "ruby"})}, []string{`multiline.preset: unknown preset "ruby" (known: go, java, python)`}},
		{parser.Config{TimeFormat: "unix"}, []string{"time_format: needs time_key"}},
		{parser.Config{TimeKey: "t", TimeFormat: "epoch"}, []string{`time_format: "epoch" is neither rfc3339, iso8601, unix, unix_ms nor a Go layout (e.g. "2006-01-02 15:04:05")`}},
		{parser.Config{TimeKey: "t", TimeFormat: "02/Jan/2006:15:04:05 -0700"}, nil},
		{parser.Config{Fields: map[string]string{"": "x"}}, []string{"fields: empty key"}},
	}
	for _, c := range cases {
		var got []string
		for _, err := range Validate(plugins.Default, c.cfg) {
			got = append(got, err.Error())
		}
		if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%+v:\n got %q\nwant %q", c.cfg, got, c.want)
		}
	}
	if _, _, err := Build(plugins.Default, parser.Config{Parser: "jsn", TimeFormat: "x"}, 0); err == nil ||
		!strings.Contains(err.Error(), "parser: unknown") || !strings.Contains(err.Error(), "time_format:") {
		t.Fatalf("Build must report every problem: %v", err)
	}
}

func TestBuildAssemblers(t *testing.T) {
	for _, c := range []struct {
		cfg     parser.Config
		wantAsm bool
	}{
		{parser.Config{Parser: "json"}, false},
		{parser.Config{Parser: "cri"}, true},
		{parser.Config{Parser: "none", Multiline: &parser.MultilineConfig{Preset: "go"}}, true},
		{parser.Config{Parser: "docker", Multiline: &parser.MultilineConfig{Preset: "go"}}, true},
	} {
		p, f, err := Build(plugins.Default, c.cfg, 1024)
		if err != nil || p == nil || (f != nil) != c.wantAsm {
			t.Errorf("%+v: %v %v", c.cfg, err, f != nil)
		}
	}
}

func TestTimeParser(t *testing.T) {
	utc := func(s string) time.Time { tt, _ := time.Parse(time.RFC3339Nano, s); return tt }
	for _, c := range []struct {
		format string
		v      any
		want   time.Time
		ok     bool
	}{
		{"rfc3339", "2026-11-25T10:00:00Z", utc("2026-11-25T10:00:00Z"), true},
		{"RFC3339", "2026-11-25T10:00:00.123456789+01:00", utc("2026-11-25T10:00:00.123456789+01:00"), true},
		{"rfc3339", "2026-11-25 10:00:00", time.Time{}, false},
		{"rfc3339", int64(5), time.Time{}, false},
		{"unix", int64(1764064800), utc("2025-11-25T10:00:00Z"), true},
		{"unix", 1764064800.5, utc("2025-11-25T10:00:00.5Z"), true},
		{"unix", "1764064800.000000001", utc("2025-11-25T10:00:00.000000001Z"), true},
		{"unix", "-1.5", time.Time{}, false},
		{"unix", "12x", time.Time{}, false},
		{"unix", true, time.Time{}, false},
		{"unix_ms", int64(1764064800123), utc("2025-11-25T10:00:00.123Z"), true},
		{"unix_ms", 1764064800123.25, utc("2025-11-25T10:00:00.12325Z"), true},
		{"unix_ms", "1764064800123", utc("2025-11-25T10:00:00.123Z"), true},
		{"2006-01-02 15:04:05", "2026-11-25 10:00:00", utc("2026-11-25T10:00:00Z"), true},
	} {
		tp, err := newTimeParser(c.format, "")
		if err != nil {
			t.Fatal(err)
		}
		got, ok := tp.parse(c.v)
		if ok != c.ok || !got.Equal(c.want) {
			t.Errorf("%s %v: got %v %v, want %v %v", c.format, c.v, got, ok, c.want, c.ok)
		}
	}
}

// Issue 20: time_format iso8601 accepts a space separator and +0000 / +00
// offsets (on today's main it was rfc3339 only); timezone applies to times
// without an offset (today read as UTC).
func TestISO8601AndTimezone(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	utc := func(s string) time.Time { x, _ := time.Parse(time.RFC3339Nano, s); return x }
	for _, c := range []struct {
		format, tz, v string
		want          time.Time
		ok            bool
	}{
		{"iso8601", "", "2026-11-25T10:00:00Z", utc("2026-11-25T10:00:00Z"), true},
		{"iso8601", "", "2026-11-25T10:00:00+0000", utc("2026-11-25T10:00:00Z"), true},
		{"iso8601", "", "2026-11-25T11:00:00.250+0100", utc("2026-11-25T10:00:00.25Z"), true},
		{"iso8601", "", "2026-11-25 10:00:00+00:00", utc("2026-11-25T10:00:00Z"), true},
		{"iso8601", "", "2026-11-25 10:00:00.5 +0000", utc("2026-11-25T10:00:00.5Z"), true},
		{"iso8601", "", "2026-11-25T12:00:00+02", utc("2026-11-25T10:00:00Z"), true},
		{"iso8601", "", "2026-11-25 10:00:00", utc("2026-11-25T10:00:00Z"), true},
		{"iso8601", "Europe/Paris", "2026-11-25 11:00:00", utc("2026-11-25T10:00:00Z"), true},
		{"iso8601", "Europe/Paris", "2026-11-25T11:00:00Z", utc("2026-11-25T11:00:00Z"), true}, // an offset wins
		{"iso8601", "", "25/11/2026 10:00", time.Time{}, false},
		{"2006-01-02 15:04:05", "Europe/Paris", "2026-07-01 12:00:00", time.Date(2026, 7, 1, 12, 0, 0, 0, paris), true},
		{"2006-01-02 15:04:05", "", "2026-07-01 12:00:00", utc("2026-07-01T12:00:00Z"), true},
	} {
		tp, err := newTimeParser(c.format, c.tz)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := tp.parse(c.v)
		if ok != c.ok || !got.Equal(c.want) {
			t.Errorf("%s %s %q: got %v %v, want %v %v", c.format, c.tz, c.v, got, ok, c.want, c.ok)
		}
	}
	if _, err := newTimeParser("", "Mars/Olympus"); err == nil || !strings.Contains(err.Error(), "timezone") {
		t.Fatalf("unknown zone: %v", err)
	}
	errs := Validate(plugins.Default, parser.Config{Parser: "json", Timezone: "UTC"})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "timezone: needs time_key") {
		t.Fatalf("timezone without time_key: %v", errs)
	}
}

func TestComposedSelectKeysAndCounters(t *testing.T) {
	p, _, err := Build(plugins.Default, parser.Config{Parser: "json", TimeKey: "ts", Fields: map[string]string{"env": "prod"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.(parser.KeySelector).SelectKeys([]string{"level"}, false)
	before := parser.ReadStats()
	e := &event.Event{Raw: []byte(`{"ts":"2026-11-25T10:00:00Z","level":"info","env":"dev","msg":"x"}`)}
	p.Parse(e)
	// Selected: level, plus ts (time_key) and env (static: the record's own wins).
	if f := e.KnownFields(); len(f) != 3 || f["env"] != "dev" || !e.Partial || e.Has(event.BadTime) {
		t.Fatalf("%#v", f)
	}
	if e.Full()["msg"] != "x" || len(e.Fields) != 4 {
		t.Fatalf("%#v", e.Fields)
	}
	bad := &event.Event{Raw: []byte("{\"level\":\"\xff\"}")}
	p.Parse(bad)
	if !bad.Has(event.InvalidUTF8) || !bad.Has(event.BadTime) || bad.Has(event.RawJSON) {
		t.Fatalf("flags %b", bad.Flags)
	}
	after := parser.ReadStats()
	if after.InvalidUTF8-before.InvalidUTF8 != 1 || after.BadTime-before.BadTime != 1 {
		t.Fatalf("%+v -> %+v", before, after)
	}
}

// TestExamples parses every parser plugin's example.yaml strictly into a
// parser.Config, validates it and checks that its README shows it.
func TestExamples(t *testing.T) {
	paths, _ := filepath.Glob("../*/example.yaml")
	if len(paths) < 7 {
		t.Fatalf("examples: %v", paths)
	}
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var cfg parser.Config
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if errs := Validate(plugins.Default, cfg); errs != nil {
			t.Errorf("%s: %v", path, errs)
		}
		readme, err := os.ReadFile(filepath.Join(filepath.Dir(path), "README.md"))
		if err != nil || !bytes.Contains(readme, bytes.TrimSpace(raw)) {
			t.Errorf("%s: README.md does not show example.yaml (%v)", path, err)
		}
	}
}

// BenchmarkCRIJSON: containerd framing, then the JSON inner parser and the
// composed stages, per line.
func BenchmarkCRIJSON(b *testing.B) {
	line := []byte(`2026-11-25T10:00:00.123456789Z stdout F {"ts":"2026-11-25T10:00:00.123Z","level":"info","msg":"request served","service":"checkout","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user_id":12345,"latency_ms":12.5,"path":"/api/v1/orders","status":200}`)
	p, newAsm, err := Build(plugins.Default, parser.Config{Parser: "cri", InnerParser: "json"}, 1<<20)
	if err != nil {
		b.Fatal(err)
	}
	asm := newAsm()
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	var out []*event.Event
	for b.Loop() {
		e := event.Event{Raw: line}
		out = asm.Push(&e, out[:0])
		p.Parse(out[0])
	}
	_ = cri.New
}

func TestCompositeAssembler(t *testing.T) {
	_, newAsm, err := Build(plugins.Default, parser.Config{Parser: "cri", Multiline: &parser.MultilineConfig{Start: `^\S`, Timeout: time.Minute}}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	a := newAsm()
	push := func(s string, out []*event.Event) []*event.Event {
		e := &event.Event{Raw: []byte(s)}
		e.SetAck(event.NewAck(1, nil))
		return a.Push(e, out)
	}
	if _, ok := a.Deadline(); ok {
		t.Fatal("deadline with nothing pending")
	}
	out := push("2026-11-25T10:00:00Z stdout P first ", nil)
	if d, ok := a.Deadline(); !ok || time.Until(d) > parser.DefaultFlushTimeout || len(out) != 0 {
		t.Fatal("a CRI partial waits flush_timeout", d, ok)
	}
	out = push("2026-11-25T10:00:00Z stdout F line", out)
	out = push("2026-11-25T10:00:00Z stderr F err", out)
	out = push("2026-11-25T10:00:00Z stdout F   continued", out)
	out = push("not cri", out) // bad framing goes through alone, at once
	if len(out) != 1 || !out[0].Has(event.ParseFailed) {
		t.Fatalf("%d events", len(out))
	}
	d, ok := a.Deadline()
	if !ok || time.Until(d) < 50*time.Second {
		t.Fatalf("deadline %v %v", d, ok)
	}
	out = a.Flush(out[:0])
	var got []string
	for _, e := range out {
		got = append(got, e.Stream+":"+string(e.Raw))
	}
	if strings.Join(got, "|") != "stdout:first line\n  continued|stderr:err" {
		t.Fatalf("%q", got)
	}
	if _, ok := a.Deadline(); ok {
		t.Fatal("deadline after flush")
	}
}

// Issue 14: with cri and multiline, Expire emits only what is due: the
// partial pieces after flush_timeout (through multiline, whose group then
// waits its own timeout), the multiline group after its timeout.
func TestCompositeExpire(t *testing.T) {
	_, newAsm, err := Build(plugins.Default, parser.Config{Parser: "cri", FlushTimeout: time.Second,
		Multiline: &parser.MultilineConfig{Start: `^\S`, Timeout: time.Hour}}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	a := newAsm()
	e := &event.Event{Raw: []byte("2026-11-25T10:00:00Z stdout P last words of a crash")}
	e.SetAck(event.NewAck(1, nil))
	if out := a.Push(e, nil); len(out) != 0 {
		t.Fatal("a partial emitted at once")
	}
	now := time.Now()
	if out := a.(parser.Expirer).Expire(now, nil); len(out) != 0 {
		t.Fatal("a partial emitted before flush_timeout")
	}
	if out := a.(parser.Expirer).Expire(now.Add(2*time.Second), nil); len(out) != 0 {
		t.Fatal("the partial skipped multiline")
	}
	d, ok := a.Deadline()
	if !ok || time.Until(d) < 50*time.Minute {
		t.Fatalf("multiline's deadline %v %v", d, ok)
	}
	out := a.(parser.Expirer).Expire(d, nil)
	if len(out) != 1 || string(out[0].Raw) != "last words of a crash" {
		t.Fatalf("%d events", len(out))
	}
}

func TestFlushTimeoutAndKeysValidated(t *testing.T) {
	for cfg, want := range map[*parser.Config]string{
		{Parser: "json", FlushTimeout: time.Second}:    "flush_timeout: only used with parser: cri or docker",
		{Parser: "cri", FlushTimeout: -time.Second}:    "flush_timeout: must not be negative",
		{Parser: "json", PathKey: "f", OffsetKey: "f"}: "offset_key: the same key as path_key",
	} {
		errs := Validate(plugins.Default, *cfg)
		if len(errs) != 1 || errs[0].Error() != want {
			t.Errorf("%+v: %v", *cfg, errs)
		}
	}
}

// Issue 14: path_key and offset_key add the file's path and the offset
// past the record's last line, on a raw JSON record too (its overlay).
func TestPathAndOffsetKeys(t *testing.T) {
	p, _, err := Build(plugins.Default, parser.Config{Parser: "json", PathKey: "file", OffsetKey: "offset"}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	e := &event.Event{Raw: []byte(`{"msg":"hi"}`), Path: "/var/log/a.log", Pos: event.Position{Offset: 42}}
	p.Parse(e)
	if v, _ := e.Field("file"); v != "/var/log/a.log" {
		t.Fatalf("file = %v", v)
	}
	if v, _ := e.Field("offset"); v != int64(42) {
		t.Fatalf("offset = %#v", v)
	}
	b := event.AppendJSON(nil, e)
	if string(b) != `{"msg":"hi","file":"/var/log/a.log","offset":42}` {
		t.Fatalf("%s", b)
	}
	none := &event.Event{Raw: []byte(`{"msg":"hi"}`)} // not from a file
	p.Parse(none)
	if _, ok := none.Field("file"); ok {
		t.Fatal("path_key set without a path")
	}
}
