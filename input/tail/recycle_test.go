package tail_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/input/tail"
	"github.com/sidelog/sidelog/pipeline"
	"github.com/sidelog/sidelog/plugins"
	_ "github.com/sidelog/sidelog/plugins/all"
)

// TestRecyclingKeepsOutput runs the real pipeline (tail with small reads,
// parsers, assemblers, filters that keep values across records, file
// outputs) twice over the same file, once with the tail reusing its read
// memory (the engine calls Recycle) and once without, and requires the
// outputs to be identical. Run it with -race: a block reused while
// anything still read it would be a race as well as a difference.
func TestRecyclingKeepsOutput(t *testing.T) {
	dir := t.TempDir()
	multi := filepath.Join(dir, "multi.log")
	writeMultiline(t, multi, 6000)
	js := filepath.Join(dir, "json.log")
	writeJSON(t, js, 20000)
	cri := filepath.Join(dir, "cri.log")
	writeCRI(t, cri, 15000)

	cases := []struct{ name, yaml string }{
		{"regex+multiline+throttle", `
inputs:
  - name: app
    type: tail
    paths: ["` + multi + `"]
    read_from: head
    read_buffer_bytes: 4KiB
    parser: regex
    regex: '^(?P<time>\S+) (?P<level>[A-Z]+) user=(?P<user>\S+) (?P<msg>(?s:.*))$'
    multiline: {start: '^\d{4}-'}
filters:
  - {type: throttle, key: 'user', limit: 3, interval: 1h}
  - type: modify
    set: {size: 'len(msg)', who: 'user + "/" + level'}
outputs:
  - {name: all, type: file, path: "OUT/all.ndjson"}
  - {name: warn, type: file, path: "OUT/warn.ndjson", route: 'level == "WARN"'}
`},
		{"json+overlay", `
inputs:
  - name: app
    type: tail
    paths: ["` + js + `"]
    read_from: head
    read_buffer_bytes: 4KiB
    parser: json
filters:
  - {type: drop, when: 'level == "debug"'}
  - {type: throttle, key: 'service', limit: 1000, interval: 1h}
  - type: modify
    set: {latency_s: 'latency_ms / 1000'}
    rename: {msg: message}
outputs:
  - {name: all, type: file, path: "OUT/all.ndjson"}
  - {name: problems, type: file, path: "OUT/problems.ndjson", route: 'level in ["warn", "error"]'}
`},
		{"cri partials+json", `
inputs:
  - name: app
    type: tail
    paths: ["` + cri + `"]
    read_from: head
    read_buffer_bytes: 4KiB
    parser: cri
    inner_parser: json
filters:
  - {type: throttle, key: 'msg', limit: 1, interval: 1h}
  - type: modify
    set: {s: 'stream + ":" + level'}
outputs:
  - {name: all, type: file, path: "OUT/all.ndjson"}
`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			with := runPipeline(t, c.yaml, false)
			without := runPipeline(t, c.yaml, true)
			for name, w := range without {
				if len(w) == 0 {
					t.Fatalf("output %s is empty", name)
				}
				if !bytes.Equal(with[name], w) {
					t.Fatalf("output %s differs with recycling:\n%s", name, firstDiff(with[name], w))
				}
			}
		})
	}
}

// runPipeline runs the config to EOF and returns each output file.
func runPipeline(t *testing.T, yml string, noRecycle bool) map[string][]byte {
	t.Helper()
	tail.SetNoRecycle(noRecycle)
	defer tail.SetNoRecycle(false)
	out := t.TempDir()
	yml = "data_dir: " + t.TempDir() + "\napi: {address: \"\"}\n" + strings.ReplaceAll(yml, "OUT/", out+"/")
	cfg, err := config.Parse("test.yaml", []byte(yml), plugins.Default)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Build(cfg, pipeline.Options{ExitOnEOF: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	reused, _ := tail.RecycleStats(p.Inputs()["app"].(*tail.Tailer))
	if noRecycle && reused != 0 || !noRecycle && reused < 10 {
		t.Fatalf("recycling off=%v: %d blocks reused", noRecycle, reused)
	}
	files := map[string][]byte{}
	for _, oc := range cfg.Outputs {
		b, err := os.ReadFile(filepath.Join(out, oc.Name+".ndjson"))
		if err != nil {
			t.Fatal(err)
		}
		files[oc.Name] = b
	}
	return files
}

func firstDiff(a, b []byte) string {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(la), len(lb)) {
		if !bytes.Equal(la[i], lb[i]) {
			return fmt.Sprintf("line %d:\n with:    %s\n without: %s", i+1, la[i], lb[i])
		}
	}
	return fmt.Sprintf("%d lines with, %d without", len(la), len(lb))
}

// writeMultiline writes n records, some with continuation lines of varied
// length, so that groups span reads.
func writeMultiline(t *testing.T, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	levels := []string{"INFO", "WARN", "ERROR", "DEBUG"}
	for i := range n {
		fmt.Fprintf(w, "2026-11-25T10:%02d:%02d.%03dZ %s user=u%d request %d %s\n",
			i/3600%60, i/60%60, i%1000, levels[i*7%4], i*31%257, i, strings.Repeat("x", i*13%90))
		for k := range i * 5 % 7 % 4 {
			fmt.Fprintf(w, "    at com.example.Handler.call%d(Handler.java:%d) %s\n", k, i%500, strings.Repeat("y", (i+k)*17%300))
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func writeJSON(t *testing.T, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	levels := []string{"info", "info", "debug", "warn", "error", "info"}
	for i := range n {
		fmt.Fprintf(w, `{"ts":"2026-11-25T10:00:00.%03dZ","level":"%s","msg":"req %d \u00e9 \"q\"","service":"svc-%d","latency_ms":%d,"extra":{"a":[%d,true,null]}}`+"\n",
			i%1000, levels[i%len(levels)], i, i%23, i*37%5000, i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// writeCRI writes n container records on two streams; one in four is split
// into P pieces and an F piece at varied points.
func writeCRI(t *testing.T, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range n {
		stream := []string{"stdout", "stderr"}[i%3%2]
		rec := fmt.Sprintf(`{"level":"%s","msg":"m%d","pad":"%s"}`, []string{"info", "warn"}[i%2], i%400, strings.Repeat("z", i*11%200))
		ts := fmt.Sprintf("2026-11-25T10:00:%02d.%09dZ", i%60, i)
		if i%4 == 0 {
			cut := 1 + i%(len(rec)-1)
			for len(rec[:cut]) > 0 {
				step := min(cut, 1+i%37)
				fmt.Fprintf(w, "%s %s P %s\n", ts, stream, rec[:step])
				rec, cut = rec[step:], cut-step
			}
		}
		fmt.Fprintf(w, "%s %s F %s\n", ts, stream, rec)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}
