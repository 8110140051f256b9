package tail

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidelog/sidelog/input"
)

func slotDoc(off int64, pathLen int) checkpointDoc {
	return checkpointDoc{Input: "in", Files: []checkpoint{
		{Dev: 1, Ino: 2, FP: 3, MatchFP: 4, MatchLen: 5, Gen: 6, Offset: off, Path: "/" + strings.Repeat("p", pathLen), Seen: 8, Size: off + 1},
		{Dev: 1, Ino: 9, Gen: 1, Offset: 2 * off, Path: "/b", Seen: 8},
	}}
}

func mustLoad(t *testing.T, path string) ckptState {
	t.Helper()
	st, err := readCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	if !st.found {
		t.Fatal("no checkpoint found")
	}
	return st
}

func slotInode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// Writes alternate between the two slots, in place (same inodes, the
// marker written once), each read back as the newest state; a shorter
// state blanks what a longer one left, a much shorter one truncates.
func TestCheckpointSlotsAlternateInPlace(t *testing.T) {
	path := checkpointPath(t.TempDir(), "in")
	s := newCkptStore(path, mustLoadOrEmpty(t, path))
	defer s.close()
	sl := slotPaths(path)
	var buf []byte
	var inos [2]uint64
	var marker uint64
	for i := range 6 {
		doc := slotDoc(int64(100+i), 300-50*i)
		var err error
		if buf, err = s.save(&doc, buf); err != nil {
			t.Fatal(err)
		}
		st := mustLoad(t, path)
		if st.from != sl[i%2] || st.doc.Seq != uint64(i+1) || st.next != (i+1)%2 {
			t.Fatalf("write %d: read from %s seq %d next %d; want %s seq %d", i, st.from, st.doc.Seq, st.next, sl[i%2], i+1)
		}
		if !reflect.DeepEqual(st.doc.Files, doc.Files) {
			t.Fatalf("write %d: read %+v, want %+v", i, st.doc.Files, doc.Files)
		}
		if i < 2 {
			inos[i] = slotInode(t, sl[i])
			if i == 0 {
				marker = slotInode(t, path)
			}
		} else if slotInode(t, sl[i%2]) != inos[i%2] {
			t.Fatalf("write %d: slot %d has a new inode", i, i%2)
		}
		if slotInode(t, path) != marker {
			t.Fatalf("write %d: the marker was written again", i)
		}
		// the slot reads as a header line and JSON (blanks after it)
		data, _ := os.ReadFile(sl[i%2])
		var v checkpointDoc
		if err := json.Unmarshal(data[slotHeaderLen:], &v); err != nil || v.Seq != uint64(i+1) {
			t.Fatalf("write %d: slot body is not JSON: %v (%q)", i, err, data)
		}
	}
	var m struct {
		Version int      `json:"version"`
		Slots   []string `json:"slots"`
	}
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &m); err != nil || m.Version != 2 || len(m.Slots) != 2 {
		t.Fatalf("marker %q: %v", data, err)
	}
	// a state far shorter than the slot truncates it
	doc := checkpointDoc{Input: "in", Files: []checkpoint{}}
	big := slotDoc(1, 20000)
	var err error
	for range 2 {
		if buf, err = s.save(&big, buf); err != nil {
			t.Fatal(err)
		}
	}
	if buf, err = s.save(&doc, buf); err != nil {
		t.Fatal(err)
	}
	st := mustLoad(t, path)
	fi, _ := os.Stat(st.from)
	if len(st.doc.Files) != 0 || fi.Size() > 200 {
		t.Fatalf("after a short write: %d files, slot of %d bytes", len(st.doc.Files), fi.Size())
	}
}

func mustLoadOrEmpty(t *testing.T, path string) ckptState {
	t.Helper()
	st, err := readCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A write torn anywhere (a kill in the middle of the pwrite, or a power cut
// that wrote some sectors of the slot and not others) reads back as the
// state before it or, when every byte made it, the state written: never an
// error, never a mix.
func TestCheckpointSlotTornWrite(t *testing.T) {
	path := checkpointPath(t.TempDir(), "in")
	var buf []byte
	var err error
	states := []checkpointDoc{slotDoc(10, 2500), slotDoc(20, 3000), slotDoc(30, 2000)}
	var before, after []byte
	for i := range states {
		if i == 2 {
			before, _ = os.ReadFile(slotPaths(path)[0])
		}
		if buf, err = saveCheckpoints(path, &states[i], buf); err != nil {
			t.Fatal(err)
		}
	}
	after, _ = os.ReadFile(slotPaths(path)[0])
	if bytes.Equal(before, after) || len(after) != len(before) {
		t.Fatalf("the third write should overwrite slot 0 in place (%d -> %d bytes)", len(before), len(after))
	}
	// the write is complete once its header and body are: the blanks
	// after them do not count
	n := bytes.IndexByte(after[slotHeaderLen:], '\n') + slotHeaderLen + 1
	var newer, older int
	check := func(what string, torn []byte) {
		t.Helper()
		if err := os.WriteFile(slotPaths(path)[0], torn, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := readCheckpoints(path)
		if err != nil || !st.found {
			t.Fatalf("%s: found=%v err=%v", what, st.found, err)
		}
		switch {
		case len(torn) >= n && bytes.Equal(torn[:n], after[:n]):
			if !reflect.DeepEqual(st.doc.Files, states[2].Files) {
				t.Fatalf("%s: the complete write read as %+v", what, st.doc.Files)
			}
			newer++
			return
		case !reflect.DeepEqual(st.doc.Files, states[1].Files) || st.from != slotPaths(path)[1] || st.next != 0:
			t.Fatalf("%s: read %+v from %s (next %d), want the state before the write from slot 1", what, st.doc.Files, st.from, st.next)
		}
		older++
	}
	// a kill: the write stopped after k bytes
	for k := 0; k <= len(after); k++ {
		torn := append(append([]byte(nil), after[:k]...), before[k:]...)
		check("cut at "+itoa(k), torn)
	}
	// a power cut: any subset of 512-byte sectors written
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		torn := append([]byte(nil), before...)
		for s := 0; s < len(after); s += 512 {
			if rng.IntN(2) == 0 {
				copy(torn[s:], after[s:min(s+512, len(after))])
			}
		}
		check("sectors", torn)
	}
	// the slot gone shorter (a write extending the file, its size not synced)
	check("short", after[:len(after)/2])
	if newer == 0 || older < 200 {
		t.Fatalf("%d tears read as the new state, %d as the old one: the cases were not exercised", newer, older)
	}
	t.Logf("%d-byte slot: %d tears read as the new state, %d as the old one", len(after), newer, older)
}

func itoa(i int) string { return string(appendPadded(nil, uint64(i), 10, 1)) }

// Of two complete slots the higher sequence number is read, whichever slot
// it is in, and the next write overwrites the other one; the sequence goes
// on from the highest.
func TestCheckpointStaleSlot(t *testing.T) {
	path := checkpointPath(t.TempDir(), "in")
	var buf []byte
	var err error
	for i := range 5 { // slot 0 holds seq 5, slot 1 seq 4
		d := slotDoc(int64(i), 5)
		if buf, err = saveCheckpoints(path, &d, buf); err != nil {
			t.Fatal(err)
		}
	}
	st := mustLoad(t, path)
	if st.from != slotPaths(path)[0] || st.doc.Seq != 5 || st.next != 1 || st.doc.Files[0].Offset != 4 {
		t.Fatalf("read seq %d off %d from %s, next %d", st.doc.Seq, st.doc.Files[0].Offset, st.from, st.next)
	}
	// swap the files: the newest is now slot 1
	sl := slotPaths(path)
	tmp := sl[0] + ".x"
	for _, r := range [][2]string{{sl[0], tmp}, {sl[1], sl[0]}, {tmp, sl[1]}} {
		if err := os.Rename(r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	st = mustLoad(t, path)
	if st.from != sl[1] || st.doc.Seq != 5 || st.next != 0 {
		t.Fatalf("after the swap: read seq %d from %s, next %d", st.doc.Seq, st.from, st.next)
	}
	d := slotDoc(99, 5)
	if _, err = saveCheckpoints(path, &d, buf); err != nil {
		t.Fatal(err)
	}
	st = mustLoad(t, path)
	if st.from != sl[0] || st.doc.Seq != 6 || st.doc.Files[0].Offset != 99 {
		t.Fatalf("after the next write: read seq %d off %d from %s", st.doc.Seq, st.doc.Files[0].Offset, st.from)
	}
}

// A write that fails leaves the newest state where it was, and the next
// write goes to the same slot again (never over the only complete one).
func TestCheckpointSlotWriteFails(t *testing.T) {
	path := checkpointPath(t.TempDir(), "in")
	s := newCkptStore(path, ckptState{})
	defer s.close()
	d1 := slotDoc(1, 5)
	if _, err := s.save(&d1, nil); err != nil {
		t.Fatal(err)
	}
	// slot 1 cannot be opened: a directory in its place
	if err := os.Mkdir(slotPaths(path)[1], 0o700); err != nil {
		t.Fatal(err)
	}
	d2 := slotDoc(2, 5)
	if _, err := s.save(&d2, nil); err == nil {
		t.Fatal("the write into a directory did not fail")
	}
	if st := mustLoad(t, path); st.doc.Files[0].Offset != 1 || s.next != 1 {
		t.Fatalf("after the failure: read off %d, next slot %d", st.doc.Files[0].Offset, s.next)
	}
	if err := os.Remove(slotPaths(path)[1]); err != nil {
		t.Fatal(err)
	}
	d3 := slotDoc(3, 5)
	if _, err := s.save(&d3, nil); err != nil {
		t.Fatal(err)
	}
	if st := mustLoad(t, path); st.doc.Files[0].Offset != 3 || st.from != slotPaths(path)[1] || st.doc.Seq != 2 {
		t.Fatalf("after the retry: read off %d seq %d from %s", st.doc.Files[0].Offset, st.doc.Seq, st.from)
	}
}

// The checkpoint of an older sidelog (one JSON file, version 1) is read;
// the first write puts the state in a slot and replaces the file with the
// marker, which an older sidelog refuses as a newer version. A crash
// between the two leaves the slot newer than the old file: the slot wins;
// an old file written after the slots (an older sidelog run in between)
// wins over them.
func TestCheckpointLegacyFile(t *testing.T) {
	path := checkpointPath(t.TempDir(), "in")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	old := slotDoc(7, 3)
	old.Version = 1
	v1 := appendCheckpoints(nil, &old)
	if err := os.WriteFile(path, v1, 0o600); err != nil {
		t.Fatal(err)
	}
	// leftovers of an interrupted write of the older sidelog
	for _, p := range []string{path + ".tmp", path + ".tmp-spare"} {
		if err := os.WriteFile(p, []byte(`{"version":1,"files":[{"dev":1,"ino":2,"off":99`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st := mustLoad(t, path)
	if st.from != path || !reflect.DeepEqual(st.doc.Files, old.Files) || st.marker {
		t.Fatalf("old file: read %+v from %s (marker %v)", st.doc.Files, st.from, st.marker)
	}
	// the slot written, the marker not yet (a crash in between)
	s := newCkptStore(path, st)
	s.marker = true // so that save does not write it
	d := slotDoc(8, 3)
	if _, err := s.save(&d, nil); err != nil {
		t.Fatal(err)
	}
	s.close()
	if st = mustLoad(t, path); st.doc.Files[0].Offset != 8 || st.from != slotPaths(path)[0] {
		t.Fatalf("slot after the old file: read off %d from %s", st.doc.Files[0].Offset, st.from)
	}
	// an older sidelog wrote its file after the slots
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, future, future); err != nil {
		t.Fatal(err)
	}
	if st = mustLoad(t, path); st.doc.Files[0].Offset != 7 || st.from != path || st.seq != 1 {
		t.Fatalf("old file after the slots: read off %d from %s, seq %d", st.doc.Files[0].Offset, st.from, st.seq)
	}
	// the next write goes above the slots' sequence and writes the marker
	d = slotDoc(9, 3)
	if _, err := saveCheckpoints(path, &d, nil); err != nil {
		t.Fatal(err)
	}
	if st = mustLoad(t, path); st.doc.Files[0].Offset != 9 || st.doc.Seq != 2 || !st.marker {
		t.Fatalf("after the write: off %d seq %d marker %v", st.doc.Files[0].Offset, st.doc.Seq, st.marker)
	}
	if _, _, err := loadLegacy(path); err != nil {
		t.Fatalf("the marker does not read as one: %v", err)
	}
	var head struct{ Version int }
	data, _ := os.ReadFile(path)
	if json.Unmarshal(data, &head) != nil || head.Version <= checkpointVersion {
		t.Fatalf("an older sidelog would read %q as its own checkpoint", data)
	}
	for _, p := range []string{path + ".tmp", path + ".tmp-spare"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s left: %v", p, err)
		}
	}
}

// Both slots torn, and no older file: corrupt (moved aside by New); a slot
// of a newer version: refused.
func TestCheckpointSlotsCorruptOrNewer(t *testing.T) {
	path := checkpointPath(t.TempDir(), "in")
	d := slotDoc(1, 3)
	for range 2 {
		if _, err := saveCheckpoints(path, &d, nil); err != nil {
			t.Fatal(err)
		}
	}
	sl := slotPaths(path)
	good, _ := os.ReadFile(sl[1])
	for _, p := range sl {
		if err := os.WriteFile(p, []byte("sidelog-checkpoint 2 len=0000000010 crc=00000000\n{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := readCheckpoints(path); !errors.Is(err, errCorrupt) {
		t.Fatalf("both slots torn: %v, want errCorrupt", err)
	}
	// New moves every file of it aside and reads known files again
	dataDir := filepath.Dir(filepath.Dir(path))
	tl, err := New(testConfig(filepath.Join(t.TempDir(), "*.log")), input.Env{Name: "in", DataDir: dataDir})
	if err != nil || tl.firstStart {
		t.Fatalf("New with both slots torn: %v (first start %v)", err, tl != nil && tl.firstStart)
	}
	for _, p := range checkpointFiles(path) {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s not moved aside: %v", p, err)
		}
		if aside, _ := filepath.Glob(p + ".corrupt-*"); len(aside) != 1 {
			t.Fatalf("%s: moved to %v", p, aside)
		}
	}
	for i, p := range sl {
		if err := os.WriteFile(p, []byte("sidelog-checkpoint 2 len=0000000010 crc=00000000\n{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if err := os.WriteFile(p, good, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	newer := bytes.Replace(good, []byte("sidelog-checkpoint 2 "), []byte("sidelog-checkpoint 3 "), 1)
	if err := os.WriteFile(sl[1], newer, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readCheckpoints(path); !errors.Is(err, errNewerVersion) {
		t.Fatalf("a slot of version 3: %v, want errNewerVersion", err)
	}
	if _, _, err := ReadCheckpointFile(checkpointPath(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("no checkpoint: %v", err)
	}
}

// An entry encoded from its cache (what persist does) is byte for byte the
// entry encoded from its fields, as the offset, seen and size move every
// write and identity, generation, path or target change now and then.
func TestCheckpointEntryCache(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"/var/log/", "a", "é", `"`, `\`, "\n", "\x00", "\u2028", "\xff"}
	str := func() string {
		var b strings.Builder
		for range rng.IntN(6) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	files := make([]checkpoint, 20)
	encs := make([]*entryEnc, len(files))
	for i := range files {
		files[i] = checkpoint{Dev: rng.Uint64(), Ino: rng.Uint64(), Path: str(), Target: str()}
		encs[i] = new(entryEnc)
	}
	rebuilt := 0
	for round := range 500 {
		for i := range files {
			c := &files[i]
			c.Offset, c.Seen, c.Size = rng.Int64(), rng.Int64N(1<<40), rng.Int64()
			switch rng.IntN(40) {
			case 0:
				c.Gen++
			case 1:
				c.Path = str()
			case 2:
				c.Target = str()
			case 3:
				c.MatchFP, c.MatchLen = rng.Uint64(), rng.IntN(1025)
			case 4:
				c.Dev, c.Ino, c.FP = rng.Uint64(), rng.Uint64(), rng.Uint64()
			}
		}
		plain := checkpointDoc{Version: slotVersion, Input: "in", Seq: uint64(round + 1), Files: files}
		want := appendCheckpoints(nil, &plain)
		cached := checkpointDoc{Version: slotVersion, Input: "in", Seq: uint64(round + 1), Files: make([]checkpoint, len(files))}
		for i := range files {
			cached.Files[i] = files[i]
			cached.Files[i].enc = encs[i]
			if encs[i].built && !encs[i].fresh(&files[i]) {
				rebuilt++
			}
		}
		if got := appendCheckpoints(nil, &cached); !bytes.Equal(got, want) {
			t.Fatalf("round %d: from the cache\n%s\nwant\n%s", round, got, want)
		}
	}
	if rebuilt == 0 {
		t.Fatal("no cached entry was ever stale: the rebuild is not exercised")
	}
}
