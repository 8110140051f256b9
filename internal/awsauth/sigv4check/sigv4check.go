// Package sigv4check runs, for tests, a SigV4-checking reverse proxy on
// 127.0.0.1 (sigv4check.py) that verifies every request with Python's
// botocore, an implementation independent of the AWS SDK for Go that the
// agent signs with, answers 403 on any mismatch and forwards verified
// requests to an upstream (the Elasticsearch stand-in).
//
// botocore is pinned (Botocore) and installed with pip into the user's
// cache directory the first time. Without python3 or pip the test is
// skipped, except in CI (CI set), where it fails.
package sigv4check

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Botocore is the pinned botocore version.
const Botocore = "1.44.5"

//go:embed sigv4check.py
var script []byte

// Server is a running checker.
type Server struct {
	URL string // http://127.0.0.1:port
}

// Key is a credential the checker accepts.
type Key struct {
	Secret  string  `json:"secret"`
	Token   string  `json:"token,omitempty"`
	Expires float64 `json:"expires,omitempty"` // unix seconds; 0: never
}

// Entry is one request the checker saw.
type Entry struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
	AKID   string `json:"akid"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Bytes  int    `json:"bytes"`
}

// Log is what the checker saw.
type Log struct {
	Botocore string  `json:"botocore"`
	Requests []Entry `json:"requests"`
}

func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("sigv4check cannot run (required in CI): %s", msg)
	}
	t.Skipf("sigv4check cannot run (python3 with pip needed; fails in CI): %s", msg)
}

// pythonPath installs the pinned botocore into the cache once and returns
// the directory to put on PYTHONPATH.
func pythonPath(t testing.TB, python string) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "sidelog-test", "botocore-"+Botocore)
	if _, err := os.Stat(filepath.Join(dir, "botocore", "__init__.py")); err == nil {
		return dir
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		unavailable(t, "%v", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "install-")
	if err != nil {
		unavailable(t, "%v", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
		"--target", tmp, "botocore=="+Botocore)
	if out, err := cmd.CombinedOutput(); err != nil {
		unavailable(t, "pip install botocore==%s: %v\n%s", Botocore, err, out)
	}
	// Another test process may have won the race: either copy is whole.
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "botocore", "__init__.py")); serr != nil {
			unavailable(t, "installing botocore: %v", err)
		}
	}
	return dir
}

// Start runs a checker for region and service in front of upstream; it is
// stopped when the test ends.
func Start(t testing.TB, upstream, region, service string, keys map[string]Key) *Server {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		unavailable(t, "no python3 on PATH")
	}
	pp := pythonPath(t, python)
	path := filepath.Join(t.TempDir(), "sigv4check.py")
	if err := os.WriteFile(path, script, 0o644); err != nil {
		t.Fatal(err)
	}
	// -s: no user site-packages; the pinned botocore goes first on sys.path.
	cmd := exec.Command(python, "-s", "-c",
		"import sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv=sys.argv[1:]; exec(open(sys.argv[0]).read())",
		pp, path, upstream, region, service)
	cmd.Stderr = &prefixWriter{t: t}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		unavailable(t, "starting python3: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if port, ok := strings.CutPrefix(sc.Text(), "LISTENING "); ok {
				ready <- port
			}
		}
		close(ready)
	}()
	var port string
	select {
	case p, ok := <-ready:
		if !ok {
			t.Fatal("sigv4check exited before listening (see its stderr above)")
		}
		port = p
	case <-time.After(60 * time.Second):
		t.Fatal("sigv4check did not start within 60 s")
	}
	s := &Server{URL: "http://127.0.0.1:" + port}
	s.AddKeys(t, keys)
	if v := s.Log(t).Botocore; v != Botocore {
		t.Fatalf("sigv4check runs botocore %s, want the pinned %s", v, Botocore)
	}
	return s
}

// AddKeys makes the checker accept more credentials.
func (s *Server) AddKeys(t testing.TB, keys map[string]Key) {
	t.Helper()
	if err := s.Add(keys); err != nil {
		t.Fatal(err)
	}
}

// Add is AddKeys for goroutines other than the test's (an STS stub).
func (s *Server) Add(keys map[string]Key) error {
	if len(keys) == 0 {
		return nil
	}
	b, _ := json.Marshal(keys)
	resp, err := http.Post(s.URL+"/__sigv4check/keys", "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("sigv4check keys: HTTP %d", resp.StatusCode)
	}
	return nil
}

// Log returns what the checker saw so far.
func (s *Server) Log(t testing.TB) Log {
	t.Helper()
	resp, err := http.Get(s.URL + "/__sigv4check/log")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l Log
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	return l
}

// Refused returns the requests answered 403.
func (l Log) Refused() []Entry {
	var out []Entry
	for _, e := range l.Requests {
		if !e.OK {
			out = append(out, e)
		}
	}
	return out
}

type prefixWriter struct{ t testing.TB }

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.t.Logf("sigv4check: %s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

var _ io.Writer = (*prefixWriter)(nil)
