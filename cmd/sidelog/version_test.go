package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A build stamped as scripts/build.sh stamps it prints the stamp.
func TestVersionStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "sidelog")
	ld := "-X main.version=v9.8.7 -X main.commit=0123abcd -X main.date=2026-12-02T19:00:00Z"
	cmd := exec.Command("go", "build", "-ldflags", ld, "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "sidelog v9.8.7 (commit 0123abcd, built 2026-12-02T19:00:00Z, " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if string(out) != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

// Unstamped (go run, go test), the command still answers with every part.
func TestVersionUnstamped(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	s := out.String()
	if !strings.HasPrefix(s, "sidelog dev (commit ") || !strings.Contains(s, ", built ") || !strings.Contains(s, runtime.Version()) {
		t.Fatalf("got %q", s)
	}
}
