package parser_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sidelog/sidelog/event"
	ilines "github.com/sidelog/sidelog/input/lines"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/parser/build"
	"github.com/sidelog/sidelog/plugins"

	_ "github.com/sidelog/sidelog/parser/cri"
	_ "github.com/sidelog/sidelog/parser/docker"
	_ "github.com/sidelog/sidelog/parser/json"
	_ "github.com/sidelog/sidelog/parser/logfmt"
	_ "github.com/sidelog/sidelog/parser/none"
	_ "github.com/sidelog/sidelog/parser/regex"
)

var update = flag.Bool("update", false, "rewrite the golden expected.ndjson files")

// goldenConfig is a parser.Config plus the input's max_line_bytes.
type goldenConfig struct {
	parser.Config `yaml:",inline"`
	MaxLineBytes  int `yaml:"max_line_bytes"`
}

// readTime is the time the (simulated) input read every line.
var readTime = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

var flagNames = []struct {
	f    event.Flags
	name string
}{
	{event.Truncated, "truncated"}, {event.ParseFailed, "parse_failed"}, {event.BadTime, "bad_time"},
	{event.InvalidUTF8, "invalid_utf8"}, {event.RawJSON, "raw_json"},
}

// result is one expected.ndjson line: the record as outputs write it, plus
// what the pipeline knows about it.
type result struct {
	Record map[string]any `json:"record"`
	Time   string         `json:"time"`
	Flags  []string       `json:"flags,omitempty"`
	Offset int64          `json:"offset"`
}

// runGolden feeds input.log line by line through the assembler (as the
// input does: one event per line with its own ack), flushes at EOF, parses
// every event and renders it.
func runGolden(t *testing.T, cfg goldenConfig, input []byte, selectKeys []string) []byte {
	t.Helper()
	p, newAsm, err := build.Build(plugins.Default, cfg.Config, cfg.MaxLineBytes)
	if err != nil {
		t.Fatal(err)
	}
	if selectKeys != nil {
		p.(parser.KeySelector).SelectKeys(selectKeys, false)
	}
	var asm parser.Assembler
	if newAsm != nil {
		asm = newAsm()
	}
	released := 0
	var events []*event.Event
	lines := 0
	// Cut as the tail cuts the file (input/lines): blank lines are no
	// record and a trailing \r goes, as in production. The tail's raw cut
	// at max_line_bytes is left to the assemblers here (0: no raw cut), as
	// the cases below test their limits.
	ilines.Split(input, 0, func(line []byte, off int64, truncated bool) {
		lines++
		e := &event.Event{Raw: line, Time: readTime, Pos: event.Position{Offset: off}}
		if truncated {
			e.Flags |= event.Truncated
		}
		e.SetAck(event.NewAck(1, func() { released++ }))
		if asm == nil {
			events = append(events, e)
		} else {
			events = asm.Push(e, events)
		}
	})
	if asm != nil {
		events = asm.Flush(events)
	}
	var out bytes.Buffer
	for _, e := range events {
		p.Parse(e)
		r := result{Record: e.Full(), Time: e.Time.Format(time.RFC3339Nano), Offset: e.Pos.Offset}
		for _, f := range flagNames {
			if e.Has(f.f) {
				r.Flags = append(r.Flags, f.name)
			}
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(b)
		out.WriteByte('\n')
		e.Done()
	}
	if released != lines {
		t.Errorf("acks: %d of %d lines released after every event was done", released, lines)
	}
	return out.Bytes()
}

func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*/config.yaml")
	if err != nil || len(dirs) == 0 {
		t.Fatal("no golden cases", err)
	}
	for _, cfgPath := range dirs {
		dir := filepath.Dir(cfgPath)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			raw, err := os.ReadFile(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			var cfg goldenConfig
			dec := yaml.NewDecoder(bytes.NewReader(raw))
			dec.KnownFields(true)
			if err := dec.Decode(&cfg); err != nil {
				t.Fatal(err)
			}
			input, err := os.ReadFile(filepath.Join(dir, "input.log"))
			if err != nil {
				t.Fatal(err)
			}
			got := runGolden(t, cfg, input, nil)
			expPath := filepath.Join(dir, "expected.ndjson")
			if *update {
				if err := os.WriteFile(expPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(expPath)
			if err != nil {
				t.Fatal(err)
			}
			compareNDJSON(t, got, want)
			// Parsing with a key selection, then completing, gives the same records.
			compareNDJSON(t, runGolden(t, cfg, input, []string{"level"}), want)
		})
	}
}

// compareNDJSON compares line by line, structurally.
func compareNDJSON(t *testing.T, got, want []byte) {
	t.Helper()
	gs, ws := splitLines(got), splitLines(want)
	if len(gs) != len(ws) {
		t.Errorf("got %d records, want %d:\n%s", len(gs), len(ws), got)
		return
	}
	for i := range gs {
		var g, w any
		if err := json.Unmarshal([]byte(gs[i]), &g); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(ws[i]), &w); err != nil {
			t.Fatalf("expected.ndjson line %d: %v", i+1, err)
		}
		gb, _ := json.Marshal(g)
		wb, _ := json.Marshal(w)
		if !bytes.Equal(gb, wb) {
			t.Errorf("record %d:\n got %s\nwant %s", i+1, gb, wb)
		}
	}
}

func splitLines(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			out = append(out, s)
		}
	}
	return out
}
