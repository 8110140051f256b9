package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLockAndInstanceID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.InstanceID) != 32 {
		t.Fatalf("instance id %q", a.InstanceID)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("data_dir mode %v, %v", st.Mode().Perm(), err)
	}
	// flock locks are per open file description: a second Open in the same
	// process conflicts just like a second process would.
	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	id := a.InstanceID
	a.Close()
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.InstanceID != id {
		t.Fatalf("instance id changed across restarts: %s then %s", id, b.InstanceID)
	}
}

// Issue 20: an existing data_dir is made 0700 too (MkdirAll leaves an
// existing directory's mode alone).
func TestExistingDirMade0700(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o700 || d.Warning != "" {
		t.Fatalf("mode %#o, warning %q", fi.Mode().Perm(), d.Warning)
	}
}
