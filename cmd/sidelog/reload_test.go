package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/config"
)

// waitFor polls cond until it holds or the deadline passes (the agent gives
// no other signal that a line was written).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fileHas(path, s string) func() bool {
	return func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), s)
	}
}

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

func TestSIGHUPReload(t *testing.T) {
	dir := t.TempDir()
	logf := filepath.Join(dir, "logs", "app.log")
	out1, out2 := filepath.Join(dir, "out1.ndjson"), filepath.Join(dir, "out2.ndjson")
	cfgPath := filepath.Join(dir, "sidelog.yaml")
	config := func(out string) string {
		return `data_dir: ` + dir + `/data
api: {address: ""}
inputs:
  - {name: app, type: tail, paths: ["` + dir + `/logs/*.log"], poll_interval: 50ms}
outputs:
  - {name: out, type: file, path: ` + out + `, batch: {timeout: 10ms}}
`
	}
	writeFile(t, cfgPath, config(out1))
	appendLine(t, logf, `{"n":1}`)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := sidelog(ctx, "run", "-c", cfgPath)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logLines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logLines <- sc.Text()
		}
		close(logLines)
	}()
	waitLog := func(s string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-logLines:
				if !ok {
					t.Fatalf("agent exited before logging %q", s)
				}
				if strings.Contains(l, s) {
					return
				}
			case <-timeout:
				t.Fatalf("no log line with %q", s)
			}
		}
	}
	waitFor(t, "line 1 in out1", fileHas(out1, `{"n":1}`))

	// An invalid config is refused; the old pipeline keeps running.
	writeFile(t, cfgPath, config(out2)+"bogus_key: 1\n")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("config reload refused")
	appendLine(t, logf, `{"n":2}`)
	waitFor(t, "line 2 in out1", fileHas(out1, `{"n":2}`))

	// A valid config is applied: new lines go to out2, none is lost.
	writeFile(t, cfgPath, config(out2))
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("config reloaded")
	appendLine(t, logf, `{"n":3}`)
	waitFor(t, "line 3 in out2", fileHas(out2, `{"n":3}`))
	if fileHas(out1, `{"n":3}`)() {
		t.Fatal("line 3 went to the old output")
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// Issue 20 item 3: every top-level config key is either applied on reload
// or refused with a log line; a key added to config.Config without saying
// which fails here.
func TestReloadKeysCoverConfig(t *testing.T) {
	ty := reflect.TypeOf(config.Config{})
	for i := range ty.NumField() {
		tag := strings.Split(ty.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		if _, ok := reloadKeys[tag]; !ok {
			t.Errorf("config key %q: say in reloadKeys whether a reload applies or refuses it", tag)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// agentProc runs `sidelog run` with args and collects its log lines.
type agentProc struct {
	cmd   *exec.Cmd
	lines chan string
}

func startAgentProc(t *testing.T, args ...string) *agentProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := sidelog(ctx, append([]string{"run"}, args...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return p
}

func (p *agentProc) waitLog(t *testing.T, s string) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("agent exited before logging %q", s)
			}
			if strings.Contains(l, s) {
				return l
			}
		case <-timeout:
			t.Fatalf("no log line with %q", s)
		}
	}
}

func httpCode(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Issue 20 item 3: SIGHUP applies api.* and log_level (on today's main it
// ignored both silently).
func TestReloadAppliesAPIAndLogLevel(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sidelog.yaml")
	a1, a2, adm := freeAddr(t), freeAddr(t), freeAddr(t)
	config := func(level, api string) string {
		return `data_dir: ` + dir + `/data
log_level: ` + level + `
api: ` + api + `
inputs:
  - {name: app, type: tail, paths: ["` + dir + `/logs/*.log"], poll_interval: 50ms}
outputs:
  - {name: out, type: file, path: ` + dir + `/out.ndjson}
`
	}
	writeFile(t, cfgPath, config("info", `{address: "`+a1+`"}`))
	p := startAgentProc(t, "-c", cfgPath)
	p.waitLog(t, "sidelog started")
	if httpCode("http://"+a1+"/healthz") != 200 {
		t.Fatal("no API on the first address")
	}
	writeFile(t, cfgPath, config("debug", `{address: "`+a2+`", pprof: true, admin: {address: "`+adm+`"}}`))
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "api reconfigured on reload")
	p.waitLog(t, "log_level applied on reload")
	p.waitLog(t, `"level":"DEBUG","msg":"debug logging on"`)
	p.waitLog(t, "config reloaded")
	if httpCode("http://"+a2+"/healthz") != 200 || httpCode("http://"+adm+"/debug/pprof/cmdline") != 200 {
		t.Fatal("the reloaded api block is not served")
	}
	if httpCode("http://"+a2+"/debug/pprof/cmdline") != 404 {
		t.Fatal("pprof on the metrics address")
	}
	waitFor(t, "the old address to close", func() bool { return httpCode("http://"+a1+"/healthz") == 0 })

	// An address that cannot be bound refuses the whole reload, clearly.
	taken, _ := net.Listen("tcp", "127.0.0.1:0")
	defer taken.Close()
	writeFile(t, cfgPath, config("info", `{address: "`+taken.Addr().String()+`"}`))
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "config reload refused, the old config keeps running: the new api block cannot be applied")
	if httpCode("http://"+a2+"/healthz") != 200 {
		t.Fatal("the old API stopped after a refused reload")
	}
}

// Issue 20 item 3: POST /-/reload on the admin listener reloads (the
// answer says why when refused), and `sidelog reload` is its client.
func TestReloadEndpoint(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sidelog.yaml")
	sock := filepath.Join(dir, "admin.sock")
	out1, out2 := filepath.Join(dir, "out1.ndjson"), filepath.Join(dir, "out2.ndjson")
	config := func(out string) string {
		return `data_dir: ` + dir + `/data
api: {address: "", admin: {socket: ` + sock + `}}
inputs:
  - {name: app, type: tail, paths: ["` + dir + `/logs/*.log"], poll_interval: 50ms}
outputs:
  - {name: out, type: file, path: ` + out + `, batch: {timeout: 10ms}}
`
	}
	writeFile(t, cfgPath, config(out1))
	appendLine(t, filepath.Join(dir, "logs", "app.log"), `{"n":1}`)
	p := startAgentProc(t, "-c", cfgPath)
	p.waitLog(t, "admin API listening")
	waitFor(t, "line 1 in out1", fileHas(out1, `{"n":1}`))

	writeFile(t, cfgPath, config(out2)+"bogus_key: 1\n")
	var out, errb bytes.Buffer
	if code := run([]string{"reload", "--socket", sock}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "bogus_key") || !strings.Contains(errb.String(), "409") {
		t.Fatalf("refused reload: exit %d, %q", code, errb.String())
	}
	writeFile(t, cfgPath, config(out2))
	out.Reset()
	if code := run([]string{"reload", "--socket", sock}, &out, &errb); code != 0 || !strings.Contains(out.String(), "config reloaded") {
		t.Fatalf("reload: exit %d, %q %q", code, out.String(), errb.String())
	}
	appendLine(t, filepath.Join(dir, "logs", "app.log"), `{"n":2}`)
	waitFor(t, "line 2 in out2", fileHas(out2, `{"n":2}`))
}

// Issue 20 item 3: --watch-config reloads when a mounted ConfigMap changes.
// Kubernetes writes the new content into a new timestamped directory and
// renames a `..data` symlink over the old one; the config path is a
// symlink through `..data`. This test makes that layout and swap for real.
func TestWatchConfigSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	mount := filepath.Join(dir, "etc")
	out1, out2 := filepath.Join(dir, "out1.ndjson"), filepath.Join(dir, "out2.ndjson")
	config := func(out string) string {
		return `data_dir: ` + dir + `/data
api: {address: ""}
inputs:
  - {name: app, type: tail, paths: ["` + dir + `/logs/*.log"], poll_interval: 50ms}
outputs:
  - {name: out, type: file, path: ` + out + `, batch: {timeout: 10ms}}
`
	}
	version := func(name, content string) {
		writeFile(t, filepath.Join(mount, name, "sidelog.yaml"), content)
		tmp := filepath.Join(mount, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(mount, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_12_02_10_00_00.1", config(out1))
	if err := os.Symlink("..data/sidelog.yaml", filepath.Join(mount, "sidelog.yaml")); err != nil {
		t.Fatal(err)
	}
	logf := filepath.Join(dir, "logs", "app.log")
	appendLine(t, logf, `{"n":1}`)
	p := startAgentProc(t, "-c", filepath.Join(mount, "sidelog.yaml"), "--watch-config")
	waitFor(t, "line 1 in out1", fileHas(out1, `{"n":1}`))

	version("..2026_12_02_10_05_00.2", config(out2))
	os.RemoveAll(filepath.Join(mount, "..2026_12_02_10_00_00.1"))
	p.waitLog(t, "config file changed: reloading")
	p.waitLog(t, `"msg":"config reloaded","config":"`+filepath.Join(mount, "sidelog.yaml")+`","by":"--watch-config"`)
	appendLine(t, logf, `{"n":2}`)
	waitFor(t, "line 2 in out2", fileHas(out2, `{"n":2}`))
	if fileHas(out1, `{"n":2}`)() {
		t.Fatal("line 2 went to the old output")
	}
}

// Issue 20 (config files): -c DIR with --watch-config: a file added to the
// directory is a change, and the reloaded config is the merge of every file.
func TestWatchConfigDirectory(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf.d")
	out1, out2 := filepath.Join(dir, "out1.ndjson"), filepath.Join(dir, "out2.ndjson")
	writeFile(t, filepath.Join(conf, "10-main.yaml"), `data_dir: `+dir+`/data
api: {address: ""}
inputs:
  - {name: app, type: tail, paths: ["`+dir+`/logs/*.log"], poll_interval: 50ms}
outputs:
  - {name: out, type: file, path: `+out1+`, batch: {timeout: 10ms}}
`)
	logf := filepath.Join(dir, "logs", "app.log")
	appendLine(t, logf, `{"n":1}`)
	p := startAgentProc(t, "-c", conf, "--watch-config")
	waitFor(t, "line 1 in out1", fileHas(out1, `{"n":1}`))

	writeFile(t, filepath.Join(conf, "20-copy.yaml"), `outputs:
  - {name: copy, type: file, path: `+out2+`, batch: {timeout: 10ms}}
`)
	p.waitLog(t, `"msg":"config reloaded","config":"`+conf+`","by":"--watch-config","inputs":1,"outputs":2`)
	appendLine(t, logf, `{"n":2}`)
	waitFor(t, "line 2 in out1", fileHas(out1, `{"n":2}`))
	waitFor(t, "line 2 in the added file's output", fileHas(out2, `{"n":2}`))
}
