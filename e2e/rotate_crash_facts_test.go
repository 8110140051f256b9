package e2e_test

import (
	"bytes"
	le "encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/buffer"
	tailin "github.com/sidelog/sidelog/input/tail"
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
// base on, in the file (inode) ino, from the moment at (taken before the
// file was created or truncated).
type crashSegment struct {
	ino  uint64
	base int
	at   time.Time
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
	dir    string // where the snapshots go
	out    string
	bufDir string
	ckpt   string
	pos    int64  // output bytes already read
	inOut  []bool // inOut[n]: line n delivered so far
}

// killSnap is the agent's state right after a kill. Taking it must not
// keep the agent down longer than the scenario says (rotated files would
// be deleted meanwhile), so it only notes the output's size, copies the
// checkpoint and the buffer's ledger, and hard-links the buffer's segments
// (append-only; the next start only cuts a torn tail, which the decoder
// skips anyway); the facts are computed after the final run.
type killSnap struct {
	outSize int64
	ckpt    []byte
	ckptAt  time.Time // the checkpoint's modification time
	bufDir  string    // ledger copy + segment links
	segs    []crashSegment
}

func (l *crashLedger) snapshot(k int, segs []crashSegment) killSnap {
	s := killSnap{outSize: fileSize(l.out), segs: segs}
	var from string
	s.ckpt, from, _ = tailin.ReadCheckpointFile(l.ckpt)
	if st, err := os.Stat(from); err == nil && from != "" {
		s.ckptAt = st.ModTime() // the slot (or file) read
	}
	s.bufDir = filepath.Join(l.dir, fmt.Sprintf("kill-%d-buffer", k))
	if err := os.MkdirAll(s.bufDir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(l.bufDir, "ledger")); err == nil {
		os.WriteFile(filepath.Join(s.bufDir, "ledger"), b, 0o600)
	}
	names, _ := filepath.Glob(filepath.Join(l.bufDir, "*.seg"))
	for _, n := range names {
		os.Link(n, filepath.Join(s.bufDir, filepath.Base(n)))
	}
	return s
}

// outLines reads the output's lines up to size (whole lines only).
func (l *crashLedger) outLines(size int64) {
	f, err := os.Open(l.out)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	if size <= l.pos {
		return
	}
	b := make([]byte, size-l.pos)
	n, _ := f.ReadAt(b, l.pos)
	b = b[:n]
	end := bytes.LastIndexByte(b, '\n') + 1
	for _, line := range bytes.Split(b[:end], []byte{'\n'}) {
		var rec struct{ N int }
		if len(line) > 0 && json.Unmarshal(line, &rec) == nil && rec.N >= 0 {
			for len(l.inOut) <= rec.N {
				l.inOut = append(l.inOut, false)
			}
			l.inOut[rec.N] = true
		}
	}
	l.pos += int64(end)
}

// pending decodes the disk buffer's unacknowledged records (frames with a
// sequence number at or above the ledger's ack position; docs/buffer.md,
// "Disk format"). Nil for a memory buffer.
func (l *crashLedger) pending(dir string) []int {
	rep, err := buffer.StatsOf(dir)
	if err != nil {
		l.t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	sort.Strings(segs)
	crc := crc32.MakeTable(crc32.Castagnoli)
	marker := []byte{0xFE, 0x53, 0x4C, 0xFF}
	seen := map[int]bool{}
	var pend []int
	for _, s := range segs {
		b, err := os.ReadFile(s)
		if err != nil {
			continue // removed meanwhile: acknowledged
		}
		for i := 40; i+28 <= len(b); {
			if !bytes.Equal(b[i:i+4], marker) {
				// A hole: zeros where records delivered before their
				// turn to be written would be (docs/buffer.md, "Write
				// path"); anything else is damage.
				j := bytes.Index(b[i:], marker)
				if j < 0 {
					j = len(b) - i
				}
				if len(bytes.Trim(b[i:i+j], "\x00")) != 0 {
					l.t.Fatalf("buffer segment %s: no frame at offset %d", s, i)
				}
				i += j
				continue
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
				if !seen[rec.N] {
					seen[rec.N] = true
					pend = append(pend, rec.N)
				}
			}
			i += 28 + n
		}
	}
	return pend
}

type ckptEntry struct {
	Ino  uint64 `json:"ino"`
	Gen  uint32 `json:"gen"`
	Off  int64  `json:"off"`
	MFP  uint64 `json:"mfp"`
	MLen int    `json:"mlen"`
}

func readCheckpoint(t *testing.T, b []byte) []ckptEntry {
	if len(b) == 0 {
		return nil
	}
	var doc struct {
		Files []ckptEntry `json:"files"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("checkpoint %q: %v", b, err)
	}
	return doc.Files
}

// content is the first n bytes of the segment that starts at line base.
func content(base, n int) []byte {
	var b []byte
	for i := base; len(b) < n; i++ {
		b = fmt.Appendf(b, `{"n":%9d}`+"\n", i)
	}
	return b[:n]
}

// fnv1a is the tail's fingerprint (FNV-1a 64) of b.
func fnv1a(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// designated is the index in segs of the segment a checkpoint entry is
// about, -1 if none. The tail's generation numbers are not the writer's
// (a restart that finds an entry without first bytes takes the next
// generation), so the entry's first bytes tell: the segment of its inode
// whose first mlen bytes hash to mfp. An entry of a generation that has
// read nothing yet (mlen 0, offset 0) is about the newest segment of its
// inode started before the checkpoint was written.
func designated(e ckptEntry, segs []crashSegment, ckptAt time.Time) int {
	found := -1
	for i, s := range segs {
		if s.ino != e.Ino {
			continue
		}
		if e.MLen > 0 {
			if fnv1a(content(s.base, e.MLen)) == e.MFP {
				return i
			}
		} else if !s.at.After(ckptAt) {
			found = i
		}
	}
	return found
}

// readFrom is the first line of segment i that a restarted tail reads
// again, given the checkpoint (segs sorted by base); end when none.
func readFrom(i int, segs []crashSegment, ckpt []ckptEntry, d []int, end int) int {
	s := segs[i]
	for j, e := range ckpt {
		if e.Ino != s.ino || d[j] < 0 {
			continue
		}
		switch {
		case d[j] > i: // an older content of the inode
			return end
		case d[j] < i: // a newer content: read from its start
			return s.base
		default:
			return min(end, s.base+int(e.Off/crashWidth))
		}
	}
	// a file the checkpoint does not know is read from its start if a glob
	// matches it: the one the writer writes (the others were rotated out)
	if s.ino == segs[len(segs)-1].ino {
		return s.base
	}
	return end
}

// facts is what a kill left to be delivered again; call it for each
// kill in order (the output is read incrementally).
func (l *crashLedger) facts(s killSnap) killFacts {
	l.outLines(s.outSize)
	pend := l.pending(s.bufDir)
	ckpt := readCheckpoint(l.t, s.ckpt)
	segs := s.segs
	d := make([]int, len(ckpt))
	for j, e := range ckpt {
		// An entry of a file opened and not read yet (offset 0, no
		// fingerprint) may predate the writer's note of the file's
		// creation (the agent saw the file before the writer recorded
		// when it made it): it re-reads nothing either way, and an
		// unmatched entry counts as "read from the start".
		if d[j] = designated(e, segs, s.ckptAt); d[j] < 0 && (e.Off > 0 || e.MLen > 0) {
			l.t.Errorf("checkpoint entry %+v matches none of the writer's files", e)
		}
	}
	last := max(len(l.inOut), segs[len(segs)-1].base) // past every line taken
	for _, n := range pend {
		last = max(last, n+1)
	}
	var ranges [][2]int // the lines read again: [from, end) per segment
	for i := range segs {
		end := last
		if i+1 < len(segs) {
			end = segs[i+1].base
		}
		if from := readFrom(i, segs, ckpt, d, end); from < end {
			ranges = append(ranges, [2]int{from, end})
		}
	}
	again := func(n int) bool {
		for _, r := range ranges {
			if n >= r[0] && n < r[1] {
				return true
			}
		}
		return false
	}
	var k killFacts
	for _, r := range ranges {
		for n := r[0]; n < min(r[1], len(l.inOut)); n++ {
			if l.inOut[n] {
				k.pastOut++
			}
		}
	}
	for _, n := range pend {
		delivered := n < len(l.inOut) && l.inOut[n]
		if delivered {
			k.inflight++
		} else if again(n) {
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
	b, _, err := tailin.ReadCheckpointFile(path)
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
