package deploy_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/internal/syncbuf"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// sidelogBinary builds ./cmd/sidelog once per test run.
func sidelogBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sidelog-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "sidelog")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/sidelog")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// Secret values used by the tests: none of them, nor their base64 forms
// (basic auth), may appear in anything the agent prints.
const (
	envSecret  = "env-s3cret-Xq7pL2vR9"
	fileSecret = "file-s3cret-Mn4kT8wZ1"
)

func leaks(out string) []string {
	var found []string
	for _, s := range []string{envSecret, fileSecret,
		base64.StdEncoding.EncodeToString([]byte("elastic:" + envSecret)),
		base64.StdEncoding.EncodeToString([]byte("elastic:" + fileSecret))} {
		if strings.Contains(out, s) {
			found = append(found, s)
		}
	}
	return found
}

func runSidelog(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(sidelogBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

// `sidelog validate` never prints a secret, whether the config is valid or
// full of errors, even errors about the very keys holding a secret.
func TestValidateNeverPrintsSecrets(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "es-password")
	if err := os.WriteFile(secretFile, []byte(fileSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"ES_PASSWORD=" + envSecret}
	cases := map[string]validateCase{
		"valid with env secret": {`
data_dir: ` + filepath.Join(dir, "data") + `
inputs: [{name: app, type: tail, paths: ["` + dir + `/*.log"]}]
outputs:
  - {name: es, type: elasticsearch, endpoints: ["http://127.0.0.1:9"], index: logs, username: elastic, password: "${ES_PASSWORD}"}
`, 0},
		"valid with file secret": {`
data_dir: ` + filepath.Join(dir, "data") + `
inputs: [{name: app, type: tail, paths: ["` + dir + `/*.log"]}]
outputs:
  - {name: es, type: elasticsearch, endpoints: ["http://127.0.0.1:9"], index: logs, username: elastic, password: "${file:` + secretFile + `}"}
`, 0},
		"secret in a duration, a size and an unknown key": {`
shutdown_timeout: "${ES_PASSWORD}"
dead_letter: {max_bytes: "${file:` + secretFile + `}"}
inputs: [{name: app, type: tail, paths: ["` + dir + `/*.log"]}]
outputs:
  - {name: es, type: elasticsearch, endpoints: ["http://127.0.0.1:9"], index: logs, timeout: "${file:` + secretFile + `}", passwd: "${ES_PASSWORD}"}
`, 1},
		"secret in a bad expression": {`
inputs: [{name: app, type: tail, paths: ["` + dir + `/*.log"]}]
filters:
  - {type: drop, when: 'level == "${ES_PASSWORD}" &&'}
outputs:
  - {name: es, type: elasticsearch, endpoints: ["http://127.0.0.1:9"], index: logs, username: elastic, password: "${file:` + secretFile + `}"}
`, 1},
	}
	checkValidate(t, dir, env, cases)
}

type validateCase struct {
	config   string
	wantCode int
}

func checkValidate(t *testing.T, dir string, env []string, cases map[string]validateCase) {
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			out, code := runSidelog(t, env, "validate", "-c", path)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.wantCode, out)
			}
			if l := leaks(out); len(l) > 0 {
				t.Fatalf("validate printed a secret %q:\n%s", l, out)
			}
			if tc.wantCode != 0 && !strings.Contains(out, path) {
				t.Fatalf("errors without the file name:\n%s", out)
			}
		})
	}
}

// The running agent, whose output is refused with 403 while it sends the
// secret, logs the failure without the secret, and writes no secret to
// its data_dir.
func TestRunNeverLogsSecrets(t *testing.T) {
	var sawAuth atomic.Bool
	var requests atomic.Int64
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if u, p, ok := r.BasicAuth(); ok && u == "elastic" && p == envSecret {
			sawAuth.Store(true)
		}
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `{"error":{"type":"security_exception","reason":"action [indices:data/write/bulk] is unauthorized for user [elastic]"},"status":403}`)
	}))
	defer es.Close()

	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	var lines strings.Builder
	for i := range 20 {
		fmt.Fprintf(&lines, `{"level":"error","msg":"line %d"}`+"\n", i)
	}
	if err := os.WriteFile(filepath.Join(logs, "app.log"), []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sidelog.yaml")
	if err := os.WriteFile(cfg, []byte(`
data_dir: `+data+`
log_level: debug
api: {address: "127.0.0.1:0"}
shutdown_timeout: 2s
inputs: [{name: app, type: tail, paths: ["`+logs+`/*.log"]}]
outputs:
  - name: es
    type: elasticsearch
    endpoints: ["`+es.URL+`"]
    index: logs
    username: elastic
    password: ${ES_PASSWORD}
    buffer: {type: disk, max_bytes: 16MiB}
    retry: {initial: 50ms, max: 200ms}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sidelogBinary(t), "run", "-c", cfg)
	cmd.Env = append(os.Environ(), "ES_PASSWORD="+envSecret)
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the output has been refused a few times, and said so.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !(requests.Load() >= 3 && strings.Contains(out.String(), "403")) {
		time.Sleep(20 * time.Millisecond)
	}
	// Issue 20: /status and /metrics show the failure (last_error) and
	// never the password: fetch them while the output fails.
	m := regexp.MustCompile(`"msg":"API listening","address":"([^"]+)"`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no API address in the log:\n%s", out.String())
	}
	var apiBodies []string
	for _, path := range []string{"/status", "/metrics"} {
		resp, err := http.Get("http://" + m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s = %d", path, resp.StatusCode)
		}
		if l := leaks(string(b)); len(l) > 0 {
			t.Fatalf("%s shows a secret %q:\n%s", path, l, b)
		}
		apiBodies = append(apiBodies, string(b))
	}
	if !strings.Contains(apiBodies[0], "403") || !strings.Contains(apiBodies[0], `"es"`) {
		t.Fatalf("/status does not show the output's 403 (so this check proves nothing):\n%s", apiBodies[0])
	}
	if !strings.Contains(apiBodies[1], `sidelog_output_state{output="es"`) {
		t.Fatalf("/metrics has no state of output es:\n%s", apiBodies[1])
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	got := out.String()
	if !sawAuth.Load() {
		t.Fatalf("the agent never sent the password (so this test proves nothing); %d requests; output:\n%s", requests.Load(), got)
	}
	if !strings.Contains(got, "403") {
		t.Fatalf("the agent did not log the 403 (%d requests):\n%s", requests.Load(), got)
	}
	if err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, got)
	}
	if l := leaks(got); len(l) > 0 {
		t.Fatalf("the agent logged a secret %q:\n%s", l, got)
	}
	// A file of data_dir holds no secret.
	err = filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if b, err := os.ReadFile(p); err == nil && len(leaks(string(b))) > 0 {
			t.Errorf("%s holds a secret", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
