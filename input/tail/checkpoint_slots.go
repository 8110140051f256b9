package tail

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sidelog/sidelog/datadir"
	"github.com/sidelog/sidelog/event"
)

// The checkpoint is written in turn to two slot files, in place: a slot is a
// header line (format version, body length, CRC-32C of the body) followed by
// the JSON document, which carries a sequence number. A write overwrites the
// slot that does not hold the newest state, then fdatasyncs it: no temp file,
// no rename, no directory fsync. A write torn by a crash or a power cut fails
// its CRC and the other slot, complete and synced by the write before, is
// read; of two valid slots the higher sequence number wins. So what is read
// at start is always a whole state that was written after every offset in it
// had been acknowledged.
//
// Beside the slots, tail-<input>.json holds a marker (version 2: "the state
// is in the slots"), written once after the first slot write. An older
// sidelog reads it as a checkpoint of a newer version and refuses to start
// rather than resume from a stale file. A version 1 file there is the
// checkpoint of an older sidelog: it is read when no slot is valid or when
// it is newer than the slots (a downgrade and upgrade again), and replaced by
// the marker after the first slot write.

const (
	slotMagic   = "sidelog-checkpoint"
	slotVersion = 2
	// header: "sidelog-checkpoint 2 len=0000001234 crc=89abcdef\n"
	slotHeaderLen = len(slotMagic) + len(" 2 len=") + 10 + len(" crc=") + 8 + 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// slotPaths are the two slot files of the checkpoint at path.
func slotPaths(path string) [2]string {
	base := strings.TrimSuffix(path, ".json")
	return [2]string{base + ".slot0", base + ".slot1"}
}

// putSlotHeader writes the header of body into h (slotHeaderLen bytes).
func putSlotHeader(h []byte, body []byte) {
	b := append(h[:0], slotMagic...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, slotVersion, 10)
	b = append(b, " len="...)
	b = appendPadded(b, uint64(len(body)), 10, 10)
	b = append(b, " crc="...)
	b = appendPadded(b, uint64(crc32.Checksum(body, castagnoli)), 16, 8)
	_ = append(b, '\n')
}

// appendPadded appends v in base, left-padded with zeros to width digits.
func appendPadded(b []byte, v uint64, base, width int) []byte {
	var d [20]byte
	digits := strconv.AppendUint(d[:0], v, base)
	for range width - len(digits) {
		b = append(b, '0')
	}
	return append(b, digits...)
}

// slotState is what one slot file holds.
type slotState struct {
	exists bool
	valid  bool // a complete write: header, length and CRC agree
	doc    checkpointDoc
	body   []byte
	size   int64
	err    error // a valid slot of a newer version
}

// readSlot reads and checks one slot file.
func readSlot(path string) slotState {
	var s slotState
	data, err := os.ReadFile(path)
	if err != nil {
		return s
	}
	s.exists, s.size = true, int64(len(data))
	if len(data) < slotHeaderLen || !strings.HasPrefix(string(data[:len(slotMagic)+1]), slotMagic+" ") {
		return s
	}
	var version, length int
	var sum uint64
	h := string(data[len(slotMagic)+1 : slotHeaderLen-1])
	fields := strings.Fields(h)
	if len(fields) != 3 || data[slotHeaderLen-1] != '\n' {
		return s
	}
	version, err1 := strconv.Atoi(fields[0])
	length, err2 := strconv.Atoi(strings.TrimPrefix(fields[1], "len="))
	sum, err3 := strconv.ParseUint(strings.TrimPrefix(fields[2], "crc="), 16, 32)
	if err1 != nil || err2 != nil || err3 != nil || length < 0 || length > len(data)-slotHeaderLen {
		return s
	}
	body := data[slotHeaderLen : slotHeaderLen+length]
	if uint64(crc32.Checksum(body, castagnoli)) != sum {
		return s
	}
	if version > slotVersion {
		s.valid = true
		s.err = fmt.Errorf("%w: %s has version %d, this sidelog reads version %d; move the checkpoint files (%s*) away to start over (files are then read again from their start)", errNewerVersion, path, version, slotVersion, strings.TrimSuffix(path, filepath.Ext(path)))
		return s
	}
	if json.Unmarshal(body, &s.doc) != nil || s.doc.Version != slotVersion || s.doc.Seq == 0 {
		return s
	}
	s.valid, s.body = true, body
	return s
}

// ckptState is the newest checkpoint found at start and where the next
// write goes.
type ckptState struct {
	doc   checkpointDoc
	found bool
	body  []byte // the JSON the state was read from
	from  string // the file it was read from
	// seq is the highest sequence number of a valid slot; next the slot
	// the next write goes to (the one not holding the newest state)
	seq    uint64
	next   int
	marker bool     // path holds the version 2 marker
	torn   []string // slot files that exist but are not a complete write
}

// readCheckpoints finds the newest complete checkpoint of path: the slot
// with the highest sequence number whose CRC holds, or the file of an older
// sidelog. found is false at the input's first start. errCorrupt: files
// exist and none holds a complete checkpoint.
func readCheckpoints(path string) (st ckptState, err error) {
	var slots [2]slotState
	newest := -1
	// A running tailer of the same input (a reload builds the new pipeline
	// once to check it while the old one runs) writes one slot at a time:
	// both torn at once is a write seen in each, not corruption, and gone
	// when read again.
	for try := 0; ; try++ {
		st.torn = st.torn[:0]
		for i, p := range slotPaths(path) {
			slots[i] = readSlot(p)
			if slots[i].err != nil {
				return st, slots[i].err
			}
			if slots[i].exists && !slots[i].valid {
				st.torn = append(st.torn, p)
			}
		}
		for i := range slots {
			if slots[i].valid && (newest < 0 || slots[i].doc.Seq > slots[newest].doc.Seq) {
				newest = i
			}
		}
		if newest >= 0 || len(st.torn) < 2 || try == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if newest >= 0 {
		st.seq = slots[newest].doc.Seq
		st.next = 1 - newest
	}
	legacy, lfound, lerr := loadLegacy(path)
	switch {
	case errors.Is(lerr, errNewerVersion):
		return st, lerr
	case lfound && lerr == nil && legacy.Version == slotVersion:
		st.marker = true
		lfound = false
	}
	useLegacy := lfound && lerr == nil
	if useLegacy && newest >= 0 {
		// both: the slots unless the older sidelog wrote its file after
		// them (started after a downgrade)
		lst, e1 := os.Stat(path)
		sst, e2 := os.Stat(slotPaths(path)[newest])
		useLegacy = e1 == nil && e2 == nil && lst.ModTime().After(sst.ModTime())
	}
	switch {
	case useLegacy:
		st.doc, st.found, st.from = legacy, true, path
		st.body, _ = os.ReadFile(path)
	case newest >= 0:
		s := &slots[newest]
		st.doc, st.found, st.body, st.from = s.doc, true, s.body, slotPaths(path)[newest]
	case lerr != nil: // a corrupt file of an older sidelog
		return st, lerr
	case st.marker || len(st.torn) > 0:
		return st, fmt.Errorf("%w: no complete checkpoint in %s", errCorrupt, strings.Join(append(st.torn, path), ", "))
	}
	return st, nil
}

// ckptStore writes the checkpoint of one input into its two slots. Used by
// persist under ckptMu.
type ckptStore struct {
	path   string // the marker (or an older sidelog's checkpoint)
	slots  [2]string
	f      [2]*os.File
	size   [2]int64 // each slot file's length
	next   int      // the slot the next write overwrites
	seq    uint64   // the sequence number of the newest state written
	marker bool     // the marker is in place
}

func newCkptStore(path string, st ckptState) *ckptStore {
	return &ckptStore{path: path, slots: slotPaths(path), next: st.next, seq: st.seq, marker: st.marker}
}

// open opens slot i, creating it (and the directory) on the first write.
func (s *ckptStore) open(i int) (*os.File, error) {
	if s.f[i] != nil {
		return s.f[i], nil
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	created := false
	f, err := os.OpenFile(s.slots[i], os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.OpenFile(s.slots[i], os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		created = true
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if created {
		// the new name must survive a power cut too
		if err := datadir.SyncDir(dir); err != nil {
			f.Close()
			return nil, err
		}
	}
	s.f[i], s.size[i] = f, fi.Size()
	return f, nil
}

// save writes doc to the slot not holding the newest state: header and
// body written in place (the rest of a longer earlier write blanked),
// then fdatasync. buf is reused. A failed write leaves the other slot the
// newest: the next write goes to the same slot again.
func (s *ckptStore) save(doc *checkpointDoc, buf []byte) ([]byte, error) {
	doc.Version = slotVersion
	doc.Seq = s.seq + 1
	buf = append(buf[:0], make([]byte, slotHeaderLen)...)
	buf = appendCheckpoints(buf, doc)
	buf = append(buf, '\n')
	putSlotHeader(buf[:slotHeaderLen], buf[slotHeaderLen:])
	i := s.next
	f, err := s.open(i)
	if err != nil {
		return buf, err
	}
	n := int64(len(buf))
	shrink := s.size[i] > 2*n+4096
	if old := s.size[i]; n < old && !shrink {
		// blank what an earlier, longer write left: the file stays
		// readable as a header line and JSON, and its length (metadata)
		// does not change
		for int64(len(buf)) < old-1 {
			buf = append(buf, ' ')
		}
		buf = append(buf, '\n')
	}
	if err = writeFull(f, buf); err == nil && shrink {
		err = f.Truncate(n)
	}
	if err == nil {
		err = fdatasync(f)
	}
	if err != nil {
		// the slot's length is not known any more: read it again
		f.Close()
		s.f[i] = nil
		return buf, err
	}
	if shrink {
		s.size[i] = n
	} else {
		s.size[i] = max(s.size[i], int64(len(buf)))
	}
	s.seq, s.next = doc.Seq, 1-i
	if !s.marker {
		if err := s.writeMarker(doc.Input); err != nil {
			return buf, err
		}
		s.marker = true
	}
	return buf, nil
}

func writeFull(f *os.File, b []byte) error {
	_, err := f.WriteAt(b, 0)
	return err
}

func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if serr = syscall.Fdatasync(int(fd)); serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// writeMarker replaces the checkpoint file of an older sidelog (or
// nothing) with the version 2 marker, once the slots hold the state, and
// removes the temp files older sidelogs left.
func (s *ckptStore) writeMarker(input string) error {
	b := []byte(`{"version":2,"input":`)
	b = event.AppendString(b, input)
	b = append(b, `,"slots":[`...)
	b = event.AppendString(b, filepath.Base(s.slots[0]))
	b = append(b, ',')
	b = event.AppendString(b, filepath.Base(s.slots[1]))
	b = append(b, "]}\n"...)
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY, 0)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	_ = os.Remove(s.path + ".tmp-spare")
	return datadir.SyncDir(filepath.Dir(s.path))
}

// close releases the slot files' descriptors.
func (s *ckptStore) close() {
	for i, f := range s.f {
		if f != nil {
			f.Close()
			s.f[i] = nil
		}
	}
}

// checkpointFiles are every file of the checkpoint at path (moved aside
// together when none is complete).
func checkpointFiles(path string) []string {
	sl := slotPaths(path)
	return []string{path, sl[0], sl[1]}
}

// ReadCheckpointFile returns the JSON of the newest complete checkpoint of
// the tail input whose checkpoint is path (<data_dir>/checkpoints/tail-<input>.json)
// and the file it was read from (a slot, or path when an older sidelog
// wrote it). For tests and tools that look at a data_dir from outside; the
// error wraps os.ErrNotExist when there is none.
func ReadCheckpointFile(path string) (doc []byte, from string, err error) {
	st, err := readCheckpoints(path)
	if err != nil {
		return nil, "", err
	}
	if !st.found {
		return nil, "", fmt.Errorf("checkpoint %s: %w", path, os.ErrNotExist)
	}
	return st.body, st.from, nil
}
