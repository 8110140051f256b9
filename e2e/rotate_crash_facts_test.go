package e2e_test

import (
	"bytes"
	le "encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/buffer"
)

// The duplicates of the crash scenarios, accounted from measured facts.
// Right after each SIGKILL (the agent is down, nothing moves), the test
// reads what the agent had taken:
//
//   - out: the lines in the output file (delivered);
//   - pend: the records of the disk buffer not acknowledged in its ledger
//     (the next start delivers them again), decoded from the segments;
//   - the tail checkpoint: per file identity and generation, the offset up
//     to which the input will not read again.
//
// The next run delivers again (a) the lines both delivered and still
// unacknowledged in the buffer: the output's in-flight batches, at most
// max_in_flight × batch.max_events (docs/buffer.md); and (b) the lines the
// tail reads again because the persisted checkpoint had not caught up with
// them although the disk buffer had them durably (delivered or pending):
// the checkpoint window of docs/architecture.md ("Durability": the records
// acknowledged during the last checkpoint write and the pause before it).
// (b) is counted over the lines the restarted tail can read again: those
// of a file (inode, generation) at or past the checkpointed offset, of a
// later generation, or of a file the checkpoint does not know. It may
// overcount (a file truncated or deleted before the restart reads it), never
// undercount: the duplicates of a run cannot exceed the sum over its kills.

// crashSegment is one file content the writer produced: the lines from
// base on, in the file (inode) ino under the tail's generation gen (0 for a
// new inode, +1 at each truncation).
type crashSegment struct {
	ino  uint64
	gen  uint32
	base int
}

// killFacts is what one kill leaves to be delivered again.
type killFacts struct {
	inflight int // delivered and unacknowledged in the buffer
	pastOut  int // delivered, past the persisted checkpoint
	pastBuf  int // durable in the buffer only, past the persisted checkpoint
	ckpt     string
}

func (k killFacts) bound() int { return k.inflight + k.pastOut + k.pastBuf }

// crashLedger follows the output file between kills.
type crashLedger struct {
	t      *testing.T
	out    string
	bufDir string
	ckpt   string
	pos    int64        // output bytes already read
	inOut  map[int]bool // lines delivered so far
}

// outLines reads the lines appended to the output since the last call.
func (l *crashLedger) outLines() {
	b, err := os.ReadFile(l.out)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		l.t.Fatal(err)
	}
	if int64(len(b)) < l.pos {
		l.t.Fatalf("output %s shrank", l.out)
	}
	b = b[l.pos:]
	end := bytes.LastIndexByte(b, '\n') + 1 // whole lines only
	for _, line := range bytes.Split(b[:end], []byte{'\n'}) {
		var rec struct{ N int }
		if len(line) > 0 && json.Unmarshal(line, &rec) == nil {
			l.inOut[rec.N] = true
		}
	}
	l.pos += int64(end)
}

// pending decodes the disk buffer's unacknowledged records (frames with a
// sequence number at or above the ledger's ack position; docs/buffer.md,
// "Disk format"). Nil for a memory buffer.
func (l *crashLedger) pending() map[int]bool {
	if l.bufDir == "" {
		return nil
	}
	rep, err := buffer.StatsOf(l.bufDir)
	if err != nil {
		l.t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(l.bufDir, "*.seg"))
	sort.Strings(segs)
	crc := crc32.MakeTable(crc32.Castagnoli)
	marker := []byte{0xFE, 0x53, 0x4C, 0xFF}
	pend := map[int]bool{}
	for _, s := range segs {
		b, err := os.ReadFile(s)
		if err != nil {
			continue // removed meanwhile: acknowledged
		}
		for i := 40; i+28 <= len(b); {
			if !bytes.Equal(b[i:i+4], marker) {
				l.t.Fatalf("buffer segment %s: no frame at offset %d", s, i)
			}
			ln := le.LittleEndian.Uint32(b[i+8:])
			n := int(ln & (1<<31 - 1))
			if i+28+n > len(b) || crc32.Checksum(b[i+8:i+28+n], crc) != le.LittleEndian.Uint32(b[i+4:]) {
				break // torn at the kill: recovery skips it
			}
			if ln&(1<<31) != 0 {
				l.t.Fatalf("buffer segment %s: a compressed frame (the scenario's buffer has compression: none)", s)
			}
			seq := le.LittleEndian.Uint64(b[i+12:])
			if seq >= rep.AckSeq {
				// the payload is the record's envelope (input, path,
				// offset) then the encoded line
				p := b[i+28 : i+28+n]
				var rec struct{ N int }
				j := bytes.LastIndex(p, []byte(`{"n":`))
				if j < 0 || json.Unmarshal(p[j:], &rec) != nil {
					l.t.Fatalf("buffer segment %s: record %q: no line number", s, p)
				}
				pend[rec.N] = true
			}
			i += 28 + n
		}
	}
	return pend
}

type ckptEntry struct {
	Ino uint64 `json:"ino"`
	Gen uint32 `json:"gen"`
	Off int64  `json:"off"`
}

func readCheckpoint(t *testing.T, path string) []ckptEntry {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Files []ckptEntry `json:"files"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("checkpoint %s: %v", path, err)
	}
	return doc.Files
}

// readAgain reports whether a restarted tail reads line n again, given
// the checkpoint and the writer's segments (sorted by base).
func readAgain(n int, segs []crashSegment, ckpt []ckptEntry) bool {
	i := sort.Search(len(segs), func(i int) bool { return segs[i].base > n }) - 1
	if i < 0 {
		return true
	}
	s := segs[i]
	for _, e := range ckpt {
		if e.Ino != s.ino {
			continue
		}
		switch {
		case e.Gen > s.gen:
			return false
		case e.Gen < s.gen:
			return true
		default:
			return int64(n-s.base)*crashWidth >= e.Off
		}
	}
	// a file the checkpoint does not know is read from its start if a glob
	// matches it: the one the writer writes (the others were rotated out)
	return s.ino == segs[len(segs)-1].ino
}

// atKill measures what kill k leaves to be delivered again.
func (l *crashLedger) atKill(segs []crashSegment) killFacts {
	l.outLines()
	pend := l.pending()
	ckpt := readCheckpoint(l.t, l.ckpt)
	var k killFacts
	for n := range l.inOut {
		if pend[n] {
			k.inflight++
		}
		if readAgain(n, segs, ckpt) {
			k.pastOut++
		}
	}
	for n := range pend {
		if !l.inOut[n] && readAgain(n, segs, ckpt) {
			k.pastBuf++
		}
	}
	var parts []string
	for _, e := range ckpt {
		parts = append(parts, fmt.Sprintf("ino %d gen %d off %d lines", e.Ino, e.Gen, e.Off/crashWidth))
	}
	k.ckpt = "[" + strings.Join(parts, "; ") + "]"
	return k
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// checkpointSummary is the tail checkpoint's entries, one
// "ino gen off(lines) size(lines) mlen" each.
func checkpointSummary(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "none"
	}
	var doc struct {
		Files []struct {
			Ino  uint64 `json:"ino"`
			Gen  int    `json:"gen"`
			Off  int64  `json:"off"`
			Size int64  `json:"size"`
			MLen int    `json:"mlen"`
		} `json:"files"`
	}
	if json.Unmarshal(b, &doc) != nil {
		return "undecodable"
	}
	s := ""
	for _, e := range doc.Files {
		s += fmt.Sprintf("[ino %d gen %d off %d lines size %d lines mlen %d]", e.Ino, e.Gen, e.Off/crashWidth, e.Size/crashWidth, e.MLen)
	}
	return s
}

// attributeDuplicates groups the repeated deliveries by the run that
// delivered the line again, the run that delivered it first, and the
// rotation segment of the line (n / rotateN): one line per group with the
// count and the range of line numbers.
func attributeDuplicates(runsOf [][]int, rotateN int) []string {
	type key struct{ again, first, seg int }
	type agg struct{ count, lo, hi int }
	groups := map[key]*agg{}
	var keys []key
	for n, runs := range runsOf {
		for _, r := range runs[min(1, len(runs)):] {
			k := key{r, runs[0], n / rotateN}
			a := groups[k]
			if a == nil {
				a = &agg{lo: n}
				groups[k] = a
				keys = append(keys, k)
			}
			a.count++
			a.hi = n
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].again != keys[j].again {
			return keys[i].again < keys[j].again
		}
		return keys[i].seg < keys[j].seg
	})
	var out []string
	for _, k := range keys {
		a := groups[k]
		out = append(out, fmt.Sprintf("run %d delivered again %d lines of segment %d first delivered by run %d: lines %d-%d",
			k.again, a.count, k.seg, k.first, a.lo, a.hi))
	}
	return out
}
