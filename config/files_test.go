package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/plugins"
	_ "github.com/sidelog/sidelog/plugins/all"
)

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A directory's files merge in lexical order: plugin lists joined, mappings
// merged key by key, other values from the last file.
func TestLoadDirectoryMerges(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf.d")
	write(t, filepath.Join(conf, "10-base.yaml"), `data_dir: `+dir+`/data
log_level: info
api: {address: "127.0.0.1:0"}
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/*.log"], parser: json}
outputs:
  - {name: out, type: stdout}
`)
	write(t, filepath.Join(conf, "20-more.yml"), `log_level: debug
api: {tap: true}
inputs:
  - {name: audit, type: tail, paths: ["`+dir+`/audit/*.log"]}
filters:
  - {type: drop, when: 'level == "debug"'}
`)
	write(t, filepath.Join(conf, "README.txt"), "not a config: ignored")
	write(t, filepath.Join(conf, ".hidden.yaml"), "log_level: [not, read]")
	cfg, err := Load(conf, plugins.Default)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogLevel != "debug" {
		t.Errorf("log_level = %q, want the later file's debug", cfg.LogLevel)
	}
	if cfg.API.Address != "127.0.0.1:0" || !cfg.API.Tap {
		t.Errorf("api = %+v, want address from the first file and tap from the second", cfg.API)
	}
	if len(cfg.Inputs) != 2 || cfg.Inputs[0].Name != "app" || cfg.Inputs[1].Name != "audit" {
		t.Errorf("inputs = %+v, want app then audit", cfg.Inputs)
	}
	if len(cfg.Filters) != 1 || len(cfg.Outputs) != 1 {
		t.Errorf("filters %d, outputs %d; want 1 and 1", len(cfg.Filters), len(cfg.Outputs))
	}
	if cfg.File != conf || len(cfg.Paths) != 1 || cfg.Paths[0] != conf {
		t.Errorf("File %q Paths %q, want the directory", cfg.File, cfg.Paths)
	}
}

// Errors in a merged config name the file and the line in that file, in
// file order.
func TestLoadFilesErrorsNameTheirFile(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	write(t, a, `data_dir: `+dir+`/data
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/*.log"]}
outputs:
  - name: out
    type: stdout
    colour: blue
`)
	write(t, b, `# the second file

outputs:
  - name: out
    type: stdout
  - name: other
    type: stdout
    pathh: x
`)
	_, err := LoadFiles([]string{b, a}, plugins.Default)
	if err == nil {
		t.Fatal("want errors")
	}
	msg := err.Error()
	lines := strings.Split(msg, "\n")
	want := []string{
		b + ":8: outputs[1].pathh: unknown key",
		a + ":7: outputs[2].colour: unknown key",
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("errors lack %q:\n%s", w, msg)
		}
	}
	if !strings.Contains(msg, `a.yaml:5: outputs[2].name: duplicate output name "out" (first used at `+b+`:4)`) {
		t.Errorf("the output name used in both files is not refused:\n%s", msg)
	}
	// b was given first: its errors come first.
	if !strings.HasPrefix(lines[0], b+":") {
		t.Errorf("first error %q, want one in %s (the first file given)", lines[0], b)
	}
	for _, l := range lines {
		if strings.Contains(l, ":1677") || strings.Contains(l, ":3355") {
			t.Errorf("a shifted line number leaked: %q", l)
		}
	}
}

// A mounted ConfigMap: files are symlinks into ..data, a hidden folder that
// Kubernetes swaps atomically; the files are read through the symlinks and
// the hidden entries skipped.
func TestLoadConfigMapDirectory(t *testing.T) {
	dir := t.TempDir()
	mount := filepath.Join(dir, "mount")
	ts := filepath.Join(mount, "..2026_12_03_09_00_00.1")
	write(t, filepath.Join(ts, "inputs.yaml"), `data_dir: `+dir+`/data
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/*.log"]}
`)
	write(t, filepath.Join(ts, "outputs.yaml"), `outputs:
  - {name: out, type: stdout}
`)
	if err := os.Symlink(filepath.Base(ts), filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"inputs.yaml", "outputs.yaml"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(mount, f)); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := Load(mount, plugins.Default)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Inputs) != 1 || len(cfg.Outputs) != 1 {
		t.Fatalf("inputs %d outputs %d, want 1 and 1", len(cfg.Inputs), len(cfg.Outputs))
	}
}

func TestLoadEmptyDirectoryRefused(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(dir, plugins.Default)
	if err == nil || !strings.Contains(err.Error(), "no *.yaml") {
		t.Fatalf("err = %v, want a clear refusal", err)
	}
}

// A syntax error in the second file names that file.
func TestLoadFilesSyntaxErrorNamesFile(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	write(t, a, "outputs:\n  - {name: out, type: stdout}\n")
	write(t, b, "inputs:\n  - name: [unclosed\n")
	_, err := LoadFiles([]string{a, b}, plugins.Default)
	if err == nil || !strings.HasPrefix(err.Error(), b+":") {
		t.Fatalf("err = %v, want it to start with %s:", err, b)
	}
}
