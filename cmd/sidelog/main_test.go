package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the sidelog binary: with SIDELOG_AS_MAIN=1 it
// runs main() with the remaining arguments, so tests drive a real process.
func TestMain(m *testing.M) {
	if os.Getenv("SIDELOG_AS_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// sidelog returns a command running this binary as sidelog.
func sidelog(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SIDELOG_AS_MAIN=1")
	return cmd
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestValidateListsEveryError(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sidelog.yaml")
	writeFile(t, cfg, `data_dir: `+dir+`/data
inputs:
  - name: app
    type: tail
    paths: ["`+dir+`/*.log"]
    colour: blue
filters:
  - type: drop
    when: 'level =='
outputs:
  - name: out
    type: file
    path: ${SIDELOG_TEST_UNSET_VAR}
    batch: {max_bytes: "5MB?"}
`)
	var stdout, stderr bytes.Buffer
	code := run([]string{"validate", "-c", cfg}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
	got := stderr.String()
	for _, want := range []string{
		cfg + `:6: inputs[0].colour: unknown key`,
		cfg + `:9: filters[0].when: line 1, column`,
		cfg + `:13: outputs[0].path: ${SIDELOG_TEST_UNSET_VAR}: environment variable is not set`,
		cfg + `:14: outputs[0].batch.max_bytes: invalid size "5MB?"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}

func TestValidateOK(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sidelog.yaml")
	writeFile(t, cfg, `data_dir: `+dir+`/data
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/*.log"], parser: json}
outputs:
  - {name: out, type: stdout}
`)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "-c", cfg}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

// The quickstart: the embedded default config prints the sample logs as
// JSON records on stdout; the agent's own logs go to stderr.
func TestQuickstartPrintsRecords(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := sidelog(ctx, "run", "--exit-on-eof")
	cmd.Dir = "../.."
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr.String())
	}
	want := 0
	for _, f := range []string{"checkout.log", "gateway.log"} {
		b, err := os.ReadFile(filepath.Join("../../testdata/quickstart", f))
		if err != nil {
			t.Fatal(err)
		}
		want += bytes.Count(b, []byte("\n"))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != want {
		t.Fatalf("got %d records, want %d:\n%s\nstderr:\n%s", len(lines), want, stdout.String(), stderr.String())
	}
	parseErrors := 0
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON on stdout: %q", l)
		}
		if _, ok := m["parse_error"]; ok {
			parseErrors++
			if !strings.Contains(m["message"].(string), "not JSON") {
				t.Fatalf("parse error record lost its raw text: %s", l)
			}
		} else if m["level"] == nil {
			t.Fatalf("record without fields: %s", l)
		}
	}
	if parseErrors != 1 {
		t.Fatalf("%d parse-error records, want 1", parseErrors)
	}
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if l != "" && !json.Valid([]byte(l)) {
			t.Fatalf("agent log line is not JSON: %q", l)
		}
	}
}

// One million JSON lines through a file output: exactly one million records,
// in order, exit 0.
func TestExitOnEOFMillionLines(t *testing.T) {
	dir := t.TempDir()
	const n = 1_000_000
	in := filepath.Join(dir, "logs", "app.log")
	os.MkdirAll(filepath.Dir(in), 0o755)
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		fmt.Fprintf(w, `{"n":%d,"level":"info","msg":"line %d"}`+"\n", i, i)
	}
	w.Flush()
	f.Close()
	out := filepath.Join(dir, "out.ndjson")
	cfg := filepath.Join(dir, "sidelog.yaml")
	writeFile(t, cfg, `data_dir: `+dir+`/data
api: {address: ""}
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/logs/*.log"], parser: json}
outputs:
  - {name: out, type: file, path: `+out+`}
`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := sidelog(ctx, "run", "-c", cfg, "--exit-on-eof")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	of, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer of.Close()
	sc := bufio.NewScanner(of)
	i := 0
	for sc.Scan() {
		want := fmt.Sprintf(`{"n":%d,"level":"info","msg":"line %d"}`, i, i)
		if sc.Text() != want {
			t.Fatalf("record %d = %q, want %q", i, sc.Text(), want)
		}
		i++
	}
	if i != n {
		t.Fatalf("got %d records, want %d", i, n)
	}
}

// A second agent on the same data_dir refuses to start.
func TestSecondAgentRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sidelog.yaml")
	writeFile(t, filepath.Join(dir, "logs", "a.log"), "{}\n")
	writeFile(t, cfg, `data_dir: `+dir+`/data
api: {address: ""}
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/logs/*.log"]}
outputs:
  - {name: out, type: file, path: `+dir+`/out.ndjson}
`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first := sidelog(ctx, "run", "-c", cfg)
	stderr1, _ := first.StderrPipe()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { first.Process.Kill(); first.Wait() }()
	// Wait for the first agent's start log line: it holds the lock by then.
	sc := bufio.NewScanner(stderr1)
	for sc.Scan() && !strings.Contains(sc.Text(), "sidelog started") {
	}
	go func() {
		for sc.Scan() {
		}
	}()
	second := sidelog(ctx, "run", "-c", cfg)
	out, err := second.CombinedOutput()
	if err == nil {
		t.Fatal("second agent started on a locked data_dir")
	}
	if !strings.Contains(string(out), "data_dir is in use by another sidelog process") {
		t.Fatalf("unclear refusal: %s", out)
	}
}

// `sidelog test` through the CLI: the passing file exits 0, the failing one
// exits 1 with a diff.
func TestRuleTests(t *testing.T) {
	t.Setenv("SIDELOG_TEST_DATA_DIR", t.TempDir())
	var stdout, stderr bytes.Buffer
	if code := run([]string{"test", "-c", "../../testrunner/testdata/sidelog.yaml", "../../testrunner/testdata/pass.yaml"}, &stdout, &stderr); code != 0 {
		t.Fatalf("pass.yaml: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	code := run([]string{"test", "-c", "../../testrunner/testdata/sidelog.yaml", "../../testrunner/testdata/fail.yaml"}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("fail.yaml: exit %d, want 1\n%s%s", code, stdout.String(), stderr.String())
	}
	if out := stdout.String() + stderr.String(); !strings.Contains(out, "+") || !strings.Contains(out, "-") {
		t.Fatalf("no diff printed:\n%s", out)
	}
}

// A file output on a disk buffer: every record delivered; then buffer
// verify/stats read the buffer of the stopped agent and drop removes it.
func TestDiskBufferAndBufferCommands(t *testing.T) {
	dir := t.TempDir()
	var lines strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&lines, `{"n":%d}`+"\n", i)
	}
	writeFile(t, filepath.Join(dir, "logs", "a.log"), lines.String())
	out := filepath.Join(dir, "out.ndjson")
	cfg := filepath.Join(dir, "sidelog.yaml")
	writeFile(t, cfg, `data_dir: `+dir+`/data
api: {address: ""}
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/logs/*.log"]}
outputs:
  - {name: out, type: file, path: `+out+`, buffer: {type: disk}}
`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b, err := sidelog(ctx, "run", "-c", cfg, "--exit-on-eof").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	got, _ := os.ReadFile(out)
	if string(got) != lines.String() {
		t.Fatalf("output differs from the input: %d bytes vs %d", len(got), lines.Len())
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"buffer", "verify", "-c", cfg}, &stdout, &stderr); code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "buffer "+filepath.Join(dir, "data", "buffer", "out")) {
		t.Fatalf("verify printed:\n%s", stdout.String())
	}
	stdout.Reset()
	if code := run([]string{"buffer", "drop", "-c", cfg, "--output", "out"}, &stdout, &stderr); code != 0 {
		t.Fatalf("drop: exit %d\n%s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "buffer", "out")); !os.IsNotExist(err) {
		t.Fatalf("buffer still there: %v", err)
	}
}

// Issue 20 (config files): -c given twice, or a directory, merges the files;
// an error names the file it is in.
func TestValidateSeveralFiles(t *testing.T) {
	dir := t.TempDir()
	base, extra := filepath.Join(dir, "base.yaml"), filepath.Join(dir, "conf.d", "out.yaml")
	writeFile(t, base, `data_dir: `+dir+`/data
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/*.log"], parser: json}
`)
	writeFile(t, extra, `outputs:
  - {name: out, type: stdout}
`)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "-c", base, "-c", filepath.Dir(extra)}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "OK (1 inputs, 0 filters, 1 outputs)") {
		t.Errorf("stdout %q", stdout.String())
	}
	writeFile(t, extra, `outputs:
  - {name: out, type: stdout, colour: blue}
`)
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"validate", "-c", base, "-c", filepath.Dir(extra)}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, stderr.String())
	}
	if want := extra + ":2: outputs[0].colour: unknown key"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q lacks %q", stderr.String(), want)
	}
}
