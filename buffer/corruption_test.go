package buffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type frameInfo struct {
	seg       string
	off, size int64
	data      string
}

// buildPristine writes n records of varied sizes through a disk buffer with
// small segments and returns the directory and the frames as laid out on
// disk (parsed here independently of the buffer's reader).
func buildPristine(t *testing.T, n int) (string, []frameInfo) {
	dir := filepath.Join(t.TempDir(), "pristine")
	d, err := Open(dir, Config{}, WithSegmentSize(4096))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	a := newAcks()
	for i := range n {
		s := fmt.Sprintf("rec-%04d-%s", i, strings.Repeat("x", 20+rng.IntN(200)))
		if err := d.Write(context.Background(), []Record{a.rec(s)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all written", func() bool { return a.n.Load() == int64(n) })
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := OSFS{}.ReadDir(dir)
	var frames []frameInfo
	for _, name := range names {
		if _, ok := parseSegName(name); !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(segHeaderSize); off < int64(len(b)); {
			l := int64(binary.LittleEndian.Uint32(b[off+8:]) & lenMask)
			frames = append(frames, frameInfo{seg: name, off: off, size: frameHeader + l, data: string(b[off+frameHeader : off+frameHeader+l])})
			off += frameHeader + l
		}
	}
	if len(frames) != n {
		t.Fatalf("pristine buffer holds %d frames, want %d", len(frames), n)
	}
	return dir, frames
}

func copyDir(t *testing.T, src, dst string) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// drain opens the buffer in dir, reads everything and returns the records
// and the stats after recovery.
func drainDir(t *testing.T, dir string) ([]string, Stats) {
	t.Helper()
	d, err := Open(dir, Config{})
	if err != nil {
		t.Fatalf("open damaged buffer: %v", err)
	}
	defer d.Close()
	st := d.Stats()
	d.Seal()
	var out []string
	for {
		b, err := d.Read(context.Background(), Limits{MaxEvents: 1000})
		if errors.Is(err, ErrDrained) {
			return out, st
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Records {
			out = append(out, string(r))
		}
		d.Ack(b)
	}
}

// expectDelivery checks that got holds every pristine record except the
// damaged ones, in order.
func expectDelivery(t *testing.T, what string, frames []frameInfo, damaged map[int]bool, got []string) {
	t.Helper()
	var want []string
	for i, f := range frames {
		if !damaged[i] {
			want = append(want, f.data)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: delivered %d records, want %d", what, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: record %d = %.20q, want %.20q", what, i, got[i], want[i])
		}
	}
}

func TestCorruptionTruncateEveryOffset(t *testing.T) {
	pristine, frames := buildPristine(t, 120)
	segs := map[string][]int{}
	var order []string
	for i, f := range frames {
		if len(segs[f.seg]) == 0 {
			order = append(order, f.seg)
		}
		segs[f.seg] = append(segs[f.seg], i)
	}
	if len(order) < 4 {
		t.Fatalf("only %d segments", len(order))
	}
	last := order[len(order)-1]
	// A frame in the middle of a middle segment, and the last frame of the
	// newest segment.
	mid := segs[order[1]][len(segs[order[1]])/2]
	tail := segs[last][len(segs[last])-1]
	root := t.TempDir()
	cases := 0
	for _, fi := range []int{mid, tail} {
		f := frames[fi]
		for cut := f.off; cut < f.off+f.size; cut++ {
			dir := filepath.Join(root, fmt.Sprint(cases))
			cases++
			copyDir(t, pristine, dir)
			if err := os.Truncate(filepath.Join(dir, f.seg), cut); err != nil {
				t.Fatal(err)
			}
			// Lost: the cut frame (if any of it remains) and every frame
			// after it in its segment.
			damaged := map[int]bool{}
			for _, j := range segs[f.seg] {
				if j >= fi {
					damaged[j] = true
				}
			}
			got, st := drainDir(t, dir)
			what := fmt.Sprintf("%s cut at %d (frame at %d, %d bytes)", f.seg, cut, f.off, f.size)
			expectDelivery(t, what, frames, damaged, got)
			wantCorrupt, wantBytes := int64(len(damaged)), cut-f.off
			if f.seg == last {
				// Nothing follows: only the torn frame is seen, if any of it
				// is left.
				wantCorrupt = 0
				if cut > f.off {
					wantCorrupt = 1
				}
			}
			if st.Corrupt != wantCorrupt || st.CorruptBytes != wantBytes {
				t.Fatalf("%s: counted %d records, %d bytes; want %d, %d", what, st.Corrupt, st.CorruptBytes, wantCorrupt, wantBytes)
			}
		}
	}
	t.Logf("%d truncations, each recovered with exact counts", cases)
}

func TestCorruptionRandomBytes(t *testing.T) {
	pristine, frames := buildPristine(t, 150)
	names := map[string]bool{}
	var segOrder []string
	for _, f := range frames {
		if !names[f.seg] {
			names[f.seg] = true
			segOrder = append(segOrder, f.seg)
		}
	}
	rng := rand.New(rand.NewPCG(9, 9))
	root := t.TempDir()
	for trial := range 150 {
		dir := filepath.Join(root, fmt.Sprint(trial))
		copyDir(t, pristine, dir)
		damaged := map[int]bool{}
		var damagedBytes int64
		hits := 1 + rng.IntN(3)
		for range hits {
			// Damage anywhere in a segment but the newest (whose tail
			// has no successor to count from: see the truncation test).
			seg := segOrder[rng.IntN(len(segOrder)-1)]
			p := filepath.Join(dir, seg)
			b, _ := os.ReadFile(p)
			off := rng.IntN(len(b))
			n := min(1+rng.IntN(8), len(b)-off)
			for i := off; i < off+n; i++ {
				b[i] ^= byte(1 + rng.IntN(255))
			}
			os.WriteFile(p, b, 0o644)
			for i, f := range frames {
				if f.seg == seg && int64(off) < f.off+f.size && int64(off+n) > f.off && !damaged[i] {
					damaged[i] = true
					damagedBytes += f.size
				}
			}
		}
		// Verify, on the stopped buffer, finds the same damage as recovery.
		r, err := Verify(dir)
		if err != nil {
			t.Fatal(err)
		}
		got, st := drainDir(t, dir)
		what := fmt.Sprintf("trial %d", trial)
		expectDelivery(t, what, frames, damaged, got)
		if st.Corrupt != int64(len(damaged)) || st.CorruptBytes != damagedBytes {
			t.Fatalf("%s: counted %d records, %d bytes; want %d, %d", what, st.Corrupt, st.CorruptBytes, len(damaged), damagedBytes)
		}
		if r.LostRecords != int64(len(damaged)) || r.BadBytes != damagedBytes {
			t.Fatalf("%s: verify found %d records, %d bytes; want %d, %d\n%s", what, r.LostRecords, r.BadBytes, len(damaged), damagedBytes, r)
		}
	}
}

func TestVerifyReport(t *testing.T) {
	pristine, frames := buildPristine(t, 60)
	dir := filepath.Join(t.TempDir(), "b")
	copyDir(t, pristine, dir)
	r, err := Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Frames != 60 || r.Records != 60 || r.LostRecords != 0 {
		t.Fatalf("pristine buffer: %s", r)
	}
	// Damage the 10th frame's length field.
	f := frames[10]
	p := filepath.Join(dir, f.seg)
	b, _ := os.ReadFile(p)
	b[f.off+9] ^= 0x40
	os.WriteFile(p, b, 0o644)
	r, err = Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || r.BadFrames != 1 || r.LostRecords != 1 || r.BadBytes != f.size || r.Frames != 59 {
		t.Fatalf("damaged frame 10: %s", r)
	}
	s := r.String()
	want := fmt.Sprintf("segment %s", f.seg)
	if !strings.Contains(s, want) || !strings.Contains(s, fmt.Sprintf("bad frames at offset %d, %d bytes, 1 records", f.off, f.size)) {
		t.Fatalf("report does not name the damage:\n%s", s)
	}
	// Verify changed nothing.
	if b2, _ := os.ReadFile(p); string(b2) != string(b) {
		t.Fatal("verify modified a segment")
	}
	// StatsOf on a stopped buffer.
	st, err := StatsOf(dir)
	if err != nil || st.Records != 59 || st.OldestUnacked.IsZero() {
		t.Fatalf("stats: %v %v", st, err)
	}
	t.Logf("\n%s", s)
}

func TestLedgerDamaged(t *testing.T) {
	pristine, frames := buildPristine(t, 50)
	dir := filepath.Join(t.TempDir(), "b")
	copyDir(t, pristine, dir)
	// Acknowledge 20 records, then damage both ledger slots.
	d, err := Open(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := d.Read(context.Background(), Limits{MaxEvents: 20})
	d.Ack(b)
	d.Close()
	if got, _ := drainDirNoAck(t, dir); len(got) != 30 {
		t.Fatalf("after acking 20 of 50: %d left", len(got))
	}
	os.WriteFile(filepath.Join(dir, ledgerName), []byte("garbage garbage garbage"), 0o644)
	got, _ := drainDir(t, dir)
	// Everything still on disk is delivered again (at least once).
	if len(got) < 30 || got[len(got)-1] != frames[49].data {
		t.Fatalf("with a damaged ledger: %d records delivered", len(got))
	}
}

func drainDirNoAck(t *testing.T, dir string) ([]string, Stats) {
	d, err := Open(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st := d.Stats()
	d.Seal()
	var out []string
	for {
		b, err := d.Read(context.Background(), Limits{MaxEvents: 1000})
		if err != nil {
			return out, st
		}
		for _, r := range b.Records {
			out = append(out, string(r))
		}
	}
}

// Recovery logs each damaged range with its segment and offset.
func TestRecoveryLogsDamage(t *testing.T) {
	pristine, frames := buildPristine(t, 40)
	dir := filepath.Join(t.TempDir(), "b")
	copyDir(t, pristine, dir)
	f := frames[7]
	p := filepath.Join(dir, f.seg)
	b, _ := os.ReadFile(p)
	b[f.off+frameHeader+3] ^= 0xFF
	os.WriteFile(p, b, 0o600)
	var logs strings.Builder
	d, err := Open(dir, Config{}, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	want := fmt.Sprintf(`"segment":"%s","offset":%d,"bytes":%d,"records":1`, f.seg, f.off, f.size)
	if !strings.Contains(logs.String(), want) {
		t.Fatalf("log does not hold %s:\n%s", want, logs.String())
	}
	if st := d.Stats(); st.Corrupt != 1 || st.Records != 39 {
		t.Fatalf("stats %+v", st)
	}
}
