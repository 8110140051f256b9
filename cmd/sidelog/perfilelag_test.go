package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Issue 20: per-file lag series are opt-in through the config key
// metrics.per_file_lag (one series per open file is too many for a
// DaemonSet), and a reload switches them. metrics' own test covers
// SetPerFileLag; this one covers the key reaching it, at start and on reload.
func TestPerFileLagKey(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sidelog.yaml")
	addr := freeAddr(t)
	config := func(metrics string) string {
		return `data_dir: ` + dir + `/data
api: {address: "` + addr + `"}
` + metrics + `
inputs:
  - {name: app, type: tail, paths: ["` + dir + `/logs/*.log"], poll_interval: 50ms}
outputs:
  - {name: out, type: file, path: ` + dir + `/out.ndjson, batch: {timeout: 10ms}}
`
	}
	logf := filepath.Join(dir, "logs", "app.log")
	appendLine(t, logf, `{"n":1}`)
	series := func() (inputSeries, fileSeries bool) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false, false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		s := string(b)
		return strings.Contains(s, `sidelog_input_lag_bytes{input="app"}`),
			strings.Contains(s, `sidelog_input_file_lag_bytes{input="app",path="`+logf+`"}`)
	}

	writeFile(t, cfgPath, config(""))
	p := startAgentProc(t, "-c", cfgPath)
	p.waitLog(t, "sidelog started")
	waitFor(t, "line 1 delivered", fileHas(filepath.Join(dir, "out.ndjson"), `{"n":1}`))
	// The input's own lag series is there (so the page is the tail's), the
	// per-file one is not.
	waitFor(t, "the input's lag series", func() bool { in, _ := series(); return in })
	if _, file := series(); file {
		t.Fatal("per-file lag exported without metrics.per_file_lag")
	}

	writeFile(t, cfgPath, config("metrics: {per_file_lag: true}"))
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "config reloaded")
	waitFor(t, "the per-file lag series after metrics.per_file_lag: true", func() bool { _, file := series(); return file })

	writeFile(t, cfgPath, config("metrics: {per_file_lag: false}"))
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "config reloaded")
	waitFor(t, "the per-file lag series to go after metrics.per_file_lag: false", func() bool { _, file := series(); return !file })
}
