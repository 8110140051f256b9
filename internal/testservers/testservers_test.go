package testservers

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

func TestAddressFromEnvironmentFirst(t *testing.T) {
	t.Setenv(envState, t.TempDir())
	t.Setenv(envKafka, " 127.0.0.1:1234 ")
	if got, ok := Address(NameKafka); !ok || got != "127.0.0.1:1234" {
		t.Fatalf("Address = %q, %v", got, ok)
	}
}

func TestAddressFromStateFolderNeedsLivePid(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(envState, dir)
	t.Setenv(envOpenSearch, "")
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("opensearch.url", "http://127.0.0.1:9999\n")
	write("opensearch.pid", strconv.Itoa(os.Getpid())+"\n")
	if got, ok := Address(NameOpenSearch); !ok || got != "http://127.0.0.1:9999" {
		t.Fatalf("Address with a live pid = %q, %v", got, ok)
	}
	// A pid that cannot exist (above Linux's pid_max limit of 2^22).
	write("opensearch.pid", "99999999\n")
	if got, ok := Address(NameOpenSearch); ok {
		t.Fatalf("Address with a dead pid = %q, want none", got)
	}
}

func TestRequired(t *testing.T) {
	for _, c := range []struct {
		ci, req string
		want    bool
	}{{"", "", false}, {"true", "", true}, {"", "1", true}, {"false", "0", false}} {
		t.Setenv("CI", c.ci)
		t.Setenv(envRequire, c.req)
		if got := Required(); got != c.want {
			t.Errorf("CI=%q %s=%q: Required() = %v", c.ci, envRequire, c.req, got)
		}
	}
}

func TestUniqueName(t *testing.T) {
	a, b := UniqueName(t, "Logs"), UniqueName(t, "Logs")
	if a == b {
		t.Fatalf("two names are equal: %s", a)
	}
	if !regexp.MustCompile(`^logs-testuniquename-[0-9a-f]{8}$`).MatchString(a) {
		t.Fatalf("name %q is not a valid lower-case index/topic name", a)
	}
}
