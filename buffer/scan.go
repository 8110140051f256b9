package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// BadRange is a damaged byte range of a segment that recovery skips.
type BadRange struct {
	Segment string
	Offset  int64
	Length  int64
	// Records is the number of records lost in the range, known from the
	// sequence numbers of the good frames around it (at the end of the
	// newest segment, where nothing follows, the sync markers in the range
	// are counted, at least one).
	Records int64
	// Unacked is the part of Records not yet acknowledged: lost records.
	Unacked int64
	zero    bool // every byte is zero: maybe a hole the writer left
}

// SegmentReport describes one segment file.
type SegmentReport struct {
	Name      string
	Size      int64
	HeaderErr string // empty if the header is good
	Frames    int64  // good frames
	FirstSeq  uint64 // of the first good frame
	LastSeq   uint64 // of the last good frame
	Unacked   int64  // good frames not acknowledged
	Bad       []BadRange
	// Holes are ranges of zeros holding only acknowledged records: the
	// writer skips records delivered before their turn to be written
	// (see Disk). Not damage.
	Holes, HoleBytes int64
}

// Report is what Verify and StatsOf find in a buffer directory. It is
// computed from the files alone, so it works on a stopped agent.
type Report struct {
	Dir           string
	LedgerSlots   int // valid ledger slots: 0 (missing or damaged), 1 or 2
	LedgerErr     string
	AckSeq        uint64 // records below it are acknowledged
	LedgerWrite   uint64 // the writer's next sequence when the ledger was last written
	Segments      []SegmentReport
	Frames        int64     // good frames in all segments
	Records       int64     // good frames not yet acknowledged
	UnackedBytes  int64     // their framed size
	DiskBytes     int64     // size of all segment files and the ledger
	OldestUnacked time.Time // time of the oldest unacknowledged record (zero: none)
	BadFrames     int64     // damaged ranges
	BadBytes      int64
	LostRecords   int64 // unacknowledged records in damaged ranges
}

// OK reports whether nothing is damaged.
func (r *Report) OK() bool { return r.BadFrames == 0 && r.LedgerErr == "" }

// String prints the report for `sidelog buffer verify|stats`.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "buffer %s\n", r.Dir)
	if r.LedgerErr != "" {
		fmt.Fprintf(&b, "  ledger: %s\n", r.LedgerErr)
	} else {
		fmt.Fprintf(&b, "  ledger: ok (%d valid slots), acknowledged below seq %d\n", r.LedgerSlots, r.AckSeq)
	}
	for _, s := range r.Segments {
		fmt.Fprintf(&b, "  segment %s: %d bytes, %d frames", s.Name, s.Size, s.Frames)
		if s.Frames > 0 {
			fmt.Fprintf(&b, " (seq %d..%d)", s.FirstSeq, s.LastSeq)
		}
		fmt.Fprintf(&b, ", %d unacknowledged\n", s.Unacked)
		if s.HeaderErr != "" {
			fmt.Fprintf(&b, "    bad header: %s\n", s.HeaderErr)
		}
		if s.Holes > 0 {
			fmt.Fprintf(&b, "    %d holes, %d bytes: acknowledged records not written (not damage)\n", s.Holes, s.HoleBytes)
		}
		for _, br := range s.Bad {
			fmt.Fprintf(&b, "    bad frames at offset %d, %d bytes, %d records (%d unacknowledged)\n", br.Offset, br.Length, br.Records, br.Unacked)
		}
	}
	fmt.Fprintf(&b, "  total: %d segments, %d bytes on disk, %d frames, %d unacknowledged records (%d bytes)\n",
		len(r.Segments), r.DiskBytes, r.Frames, r.Records, r.UnackedBytes)
	if !r.OldestUnacked.IsZero() {
		fmt.Fprintf(&b, "  oldest unacknowledged: %s (%s ago)\n", r.OldestUnacked.UTC().Format(time.RFC3339), time.Since(r.OldestUnacked).Round(time.Second))
	}
	if r.BadFrames > 0 {
		fmt.Fprintf(&b, "  damaged: %d ranges, %d bytes, %d unacknowledged records lost\n", r.BadFrames, r.BadBytes, r.LostRecords)
	} else {
		b.WriteString("  damaged: none\n")
	}
	return b.String()
}

// WriteTo writes String() to w.
func (r *Report) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, r.String())
	return int64(n), err
}

// Verify checks every segment and the ledger of the buffer in dir without
// changing anything. A damaged buffer is not an error: the report says what
// is damaged. The error is for a directory that cannot be read.
func Verify(dir string) (*Report, error) { return scanDir(OSFS{}, dir) }

// StatsOf reports sizes, record counts and the oldest unacknowledged record
// of the buffer in dir (the same scan as Verify).
func StatsOf(dir string) (*Report, error) { return scanDir(OSFS{}, dir) }

// segScan is one segment as recovery found it.
type segScan struct {
	SegmentReport
	id      uint64
	goodEnd int64 // end offset of the last good frame (header size if none)
	tail    bool  // the last bad range reaches the end of the file
}

func readAll(fsys FS, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	m, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:m], nil
}

// scanDir reads the ledger and every segment of dir.
func scanDir(fsys FS, dir string) (*Report, error) {
	r, segs, err := scan(fsys, dir)
	if err != nil {
		return nil, err
	}
	for _, s := range segs {
		r.Segments = append(r.Segments, s.SegmentReport)
	}
	return r, nil
}

// scanner carries the state of a scan across segments.
type scanner struct {
	r       *Report
	expect  uint64 // the sequence number the next good frame should have
	started bool
	// damaged ranges met since the last good frame, as (segment, index)
	pending []*BadRange
	markers []int
	last    *segScan // the segment of the last good frame
}

func (sc *scanner) bad(s *segScan, off, end int64, data []byte) {
	s.Bad = append(s.Bad, BadRange{Segment: s.Name, Offset: off, Length: end - off, zero: allZero(data[off:end])})
	m := bytes.Count(data[off:end], syncMarker[:])
	sc.markers = append(sc.markers, m)
	sc.pending = append(sc.pending, nil) // pointer fixed when s.Bad stops growing
}

func (sc *scanner) good(s *segScan, fr frame, off int64) {
	r := sc.r
	if !sc.started {
		sc.expect, sc.started = fr.seq, true
	}
	if fr.seq > sc.expect && len(sc.pending) == 0 && sc.last != nil {
		// Records missing without damaged bytes (a segment cut short at a
		// frame boundary): report them where they should have been.
		br := BadRange{Segment: sc.last.Name, Offset: sc.last.goodEnd, Records: int64(fr.seq - sc.expect)}
		if lo := max(sc.expect, r.AckSeq); fr.seq > lo {
			br.Unacked = int64(fr.seq - lo)
		}
		if br.Unacked > 0 {
			sc.last.Bad = append(sc.last.Bad, br)
		}
	}
	if fr.seq > sc.expect && len(sc.pending) > 0 {
		// The gap belongs to the first damaged range after the previous
		// good frame.
		br := sc.pending[0]
		br.Records += int64(fr.seq - sc.expect)
		if lo := max(sc.expect, r.AckSeq); fr.seq > lo {
			br.Unacked += int64(fr.seq - lo)
		}
	}
	sc.pending, sc.markers = sc.pending[:0], sc.markers[:0]
	if fr.seq >= sc.expect {
		sc.expect = fr.seq + 1
	}
	if s.Frames == 0 {
		s.FirstSeq = fr.seq
	}
	s.Frames++
	s.LastSeq = fr.seq
	s.goodEnd = off + int64(fr.size)
	sc.last = s
	r.Frames++
	if fr.seq >= r.AckSeq {
		s.Unacked++
		r.Records++
		r.UnackedBytes += int64(fr.size)
		if r.OldestUnacked.IsZero() {
			r.OldestUnacked = time.UnixMilli(fr.ms)
		}
	}
}

// segment scans one segment file's contents.
func (sc *scanner) segment(name string, id uint64, data []byte) *segScan {
	s := &segScan{SegmentReport: SegmentReport{Name: name, Size: int64(len(data))}, id: id, goodEnd: segHeaderSize}
	if _, err := parseSegHeader(data); err != nil {
		s.HeaderErr = err.Error()
	}
	if len(data) < segHeaderSize {
		if len(data) > 0 {
			sc.bad(s, 0, int64(len(data)), data)
			sc.fix(s)
			s.tail = true
		}
		return s
	}
	off := segHeaderSize
	badStart := -1
	for off < len(data) {
		fr, st := parseFrame(data[off:])
		if st == frameOK {
			if badStart >= 0 {
				sc.bad(s, int64(badStart), int64(off), data)
				sc.fix(s)
				badStart = -1
			}
			sc.good(s, fr, int64(off))
			off += fr.size
			continue
		}
		if badStart < 0 {
			badStart = off
		}
		j := nextMarker(data, off+1)
		if j < 0 {
			off = len(data)
			break
		}
		off = j
	}
	if badStart >= 0 {
		sc.bad(s, int64(badStart), int64(len(data)), data)
		sc.fix(s)
		s.tail = true
	}
	return s
}

// fix points the newest pending entry at its BadRange.
func (sc *scanner) fix(s *segScan) {
	sc.pending[len(sc.pending)-1] = &s.Bad[len(s.Bad)-1]
	// s.Bad may have been reallocated: refresh the pointers into s.
	for i, k := len(sc.pending)-2, len(s.Bad)-2; i >= 0 && k >= 0; i, k = i-1, k-1 {
		if sc.pending[i].Segment != s.Name {
			break
		}
		sc.pending[i] = &s.Bad[k]
	}
}

func scan(fsys FS, dir string) (*Report, []*segScan, error) {
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	r := &Report{Dir: dir}
	lb, err := readAll(fsys, filepath.Join(dir, ledgerName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.LedgerErr = "missing"
	case err != nil:
		return nil, nil, err
	default:
		r.DiskBytes += int64(len(lb))
		l, valid := pickLedger(lb)
		r.LedgerSlots = valid
		if valid == 0 {
			r.LedgerErr = fmt.Sprintf("damaged (%d bytes, no valid slot)", len(lb))
		} else {
			r.AckSeq, r.LedgerWrite = l.ackSeq, l.writeSeq
		}
	}
	sc := &scanner{r: r, expect: r.AckSeq, started: r.LedgerSlots > 0}
	var segs []*segScan
	for _, n := range names {
		id, ok := parseSegName(n)
		if !ok {
			continue
		}
		data, err := readAll(fsys, filepath.Join(dir, n))
		if err != nil {
			return nil, nil, err
		}
		s := sc.segment(n, id, data)
		r.DiskBytes += s.Size
		segs = append(segs, s)
	}
	// Damage after the last good frame: nothing tells how many records it
	// held; count its sync markers (at least one record).
	for i, br := range sc.pending {
		br.Records = int64(sc.markers[i])
		if i == 0 {
			br.Records = max(1, br.Records)
		}
		if sc.expect >= r.AckSeq {
			br.Unacked = br.Records
		}
	}
	for _, s := range segs {
		// A hole: zeros where acknowledged records would be, good frames
		// after it (not at the end of a file: a torn tail is damage).
		bad := s.Bad[:0]
		for _, br := range s.Bad {
			if br.zero && br.Unacked == 0 && br.Offset+br.Length < s.Size {
				s.Holes++
				s.HoleBytes += br.Length
				continue
			}
			bad = append(bad, br)
		}
		s.Bad = bad
		for _, br := range s.Bad {
			r.BadFrames++
			r.BadBytes += br.Length
			r.LostRecords += br.Unacked
		}
	}
	return r, segs, nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
