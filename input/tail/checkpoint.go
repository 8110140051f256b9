package tail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sidelog/sidelog/event"
)

// The checkpoint holds, per file identity, the generation and the offset up
// to which every line has been acknowledged. It is JSON with a version
// number, written in turn to two slot files (checkpoint_slots.go); a crash
// leaves at least one of them complete.

// checkpointVersion is the version of the JSON written by older sidelogs
// (one file, replaced by rename); slotVersion is the current one.
const checkpointVersion = 1

type checkpointDoc struct {
	Version int          `json:"version"`
	Input   string       `json:"input"`
	Seq     uint64       `json:"seq,omitempty"` // slots: the write's sequence number
	Files   []checkpoint `json:"files"`
}

type checkpoint struct {
	Dev      uint64 `json:"dev"`
	Ino      uint64 `json:"ino"`
	FP       uint64 `json:"fp"`   // FileID.Fingerprint, frozen when first read
	MatchFP  uint64 `json:"mfp"`  // hash of the first MatchLen bytes
	MatchLen int    `json:"mlen"` // grows up to fingerprint_bytes
	Gen      uint32 `json:"gen"`
	Offset   int64  `json:"off"`
	Path     string `json:"path"`
	Seen     int64  `json:"seen"` // unix seconds: last time a path matched it
	// Size is the file's size when last seen: a rotated file that is gone
	// at the next start had Size-Offset unread bytes (counted as lost).
	Size int64 `json:"size"`
	// Target is the resolved path when Path is a symbolic link: rotated
	// files are looked for in its directory too.
	Target string `json:"target,omitempty"`

	enc *entryEnc // persist: the file's encoding of its fields that rarely change
}

// entryEnc keeps the JSON of the fields of one file's entry that change
// rarely (identity, generation, path): a write re-encodes only the offset,
// seen and size of each file, and the path is not escaped again.
type entryEnc struct {
	dev, ino, fp, mfp uint64
	mlen              int
	gen               uint32
	path, target      string
	head              []byte // {"dev":…,"gen":G,"off":
	mid               []byte // ,"path":"…","seen":
	tail              []byte // ,"target":"…"} or }
	built             bool
}

// fresh reports whether e was built from c's fields.
func (e *entryEnc) fresh(c *checkpoint) bool {
	return e.built && e.dev == c.Dev && e.ino == c.Ino && e.fp == c.FP && e.mfp == c.MatchFP &&
		e.mlen == c.MatchLen && e.gen == c.Gen && e.path == c.Path && e.target == c.Target
}

func (e *entryEnc) build(c *checkpoint) {
	e.dev, e.ino, e.fp, e.mfp, e.mlen, e.gen, e.path, e.target = c.Dev, c.Ino, c.FP, c.MatchFP, c.MatchLen, c.Gen, c.Path, c.Target
	e.head = appendEntryHead(e.head[:0], c)
	e.mid = appendEntryMid(e.mid[:0], c)
	e.tail = appendEntryTail(e.tail[:0], c)
	e.built = true
}

// errNewerVersion is returned for a checkpoint written by a newer sidelog.
var errNewerVersion = errors.New("checkpoint version is newer than this sidelog supports")

// errCorrupt is returned for a checkpoint that does not decode.
var errCorrupt = errors.New("checkpoint is corrupt")

// checkpointPath is the file of one input below dataDir.
func checkpointPath(dataDir, input string) string {
	var b strings.Builder
	for _, r := range input {
		if r == '/' || r == '\\' || r == 0 || r == '.' && b.Len() == 0 {
			b.WriteByte('_')
		} else {
			b.WriteRune(r)
		}
	}
	return filepath.Join(dataDir, "checkpoints", "tail-"+b.String()+".json")
}

// loadCheckpoints returns the newest complete checkpoint of path. found is
// false when there is none (the input's first start).
func loadCheckpoints(path string) (doc checkpointDoc, found bool, err error) {
	st, err := readCheckpoints(path)
	return st.doc, st.found, err
}

// loadLegacy reads the file at path: the checkpoint of an older sidelog
// (version 1) or the marker that the slots hold it (version 2).
func loadLegacy(path string) (doc checkpointDoc, found bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return doc, false, nil
	}
	if err != nil {
		return doc, false, err
	}
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return doc, true, fmt.Errorf("%w: %s: %v", errCorrupt, path, err)
	}
	switch {
	case head.Version > slotVersion:
		return doc, true, fmt.Errorf("%w: %s has version %d, this sidelog reads version %d; move the checkpoint files (%s*) away to start over (files are then read again from their start)", errNewerVersion, path, head.Version, slotVersion, strings.TrimSuffix(path, ".json"))
	case head.Version < 1:
		return doc, true, fmt.Errorf("%w: %s: version %d", errCorrupt, path, head.Version)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return doc, true, fmt.Errorf("%w: %s: %v", errCorrupt, path, err)
	}
	return doc, true, nil
}

// appendCheckpoints appends doc as JSON, as json.Marshal would (its keys,
// in its order) but without reflection: with a thousand files the
// checkpoint is written every checkpoint_interval while they are appended.
func appendCheckpoints(b []byte, doc *checkpointDoc) []byte {
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, int64(doc.Version), 10)
	b = append(b, `,"input":`...)
	b = event.AppendString(b, doc.Input)
	if doc.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, doc.Seq, 10)
	}
	b = append(b, `,"files":`...)
	if doc.Files == nil {
		return append(b, "null}"...)
	}
	b = append(b, '[')
	for i := range doc.Files {
		c := &doc.Files[i]
		if i > 0 {
			b = append(b, ',')
		}
		if e := c.enc; e != nil {
			if !e.fresh(c) {
				e.build(c)
			}
			b = append(b, e.head...)
			b = strconv.AppendInt(b, c.Offset, 10)
			b = append(b, e.mid...)
			b = appendEntryNumbers(b, c)
			b = append(b, e.tail...)
			continue
		}
		b = appendEntryHead(b, c)
		b = strconv.AppendInt(b, c.Offset, 10)
		b = appendEntryMid(b, c)
		b = appendEntryNumbers(b, c)
		b = appendEntryTail(b, c)
	}
	return append(b, "]}"...)
}

// appendEntryHead appends an entry's JSON up to its offset's value.
func appendEntryHead(b []byte, c *checkpoint) []byte {
	b = append(b, `{"dev":`...)
	b = strconv.AppendUint(b, c.Dev, 10)
	b = append(b, `,"ino":`...)
	b = strconv.AppendUint(b, c.Ino, 10)
	b = append(b, `,"fp":`...)
	b = strconv.AppendUint(b, c.FP, 10)
	b = append(b, `,"mfp":`...)
	b = strconv.AppendUint(b, c.MatchFP, 10)
	b = append(b, `,"mlen":`...)
	b = strconv.AppendInt(b, int64(c.MatchLen), 10)
	b = append(b, `,"gen":`...)
	b = strconv.AppendUint(b, uint64(c.Gen), 10)
	return append(b, `,"off":`...)
}

// appendEntryMid appends the JSON between the offset's and seen's values.
func appendEntryMid(b []byte, c *checkpoint) []byte {
	b = append(b, `,"path":`...)
	b = event.AppendString(b, c.Path)
	return append(b, `,"seen":`...)
}

// appendEntryNumbers appends seen's value and the size.
func appendEntryNumbers(b []byte, c *checkpoint) []byte {
	b = strconv.AppendInt(b, c.Seen, 10)
	b = append(b, `,"size":`...)
	return strconv.AppendInt(b, c.Size, 10)
}

// appendEntryTail appends the JSON after size's value.
func appendEntryTail(b []byte, c *checkpoint) []byte {
	if c.Target != "" {
		b = append(b, `,"target":`...)
		b = event.AppendString(b, c.Target)
	}
	return append(b, '}')
}

// persistIdle is how often the persister looks for offsets moved without
// an acknowledgement (skipped bytes, a new generation, forgotten entries).
const persistIdle = time.Second

// persister writes the checkpoint as soon as acknowledgements move an
// offset: a group commit. The acknowledgements released while one write
// runs (the slot written in place, fdatasync) go into the next, and
// two writes start at least checkpoint_interval apart. With a disk buffer
// an acknowledgement means the record is fsynced in the buffer, so a
// record the buffer holds is read again after a crash only if it was
// acknowledged during the last write or the pause before it. It returns
// when ctx is cancelled (Run writes the final checkpoint itself).
func (t *Tailer) persister(ctx context.Context) {
	idle := time.NewTicker(persistIdle)
	defer idle.Stop()
	var last time.Time
	pause := time.NewTimer(0)
	<-pause.C
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.ackSig:
		case <-idle.C:
		}
		if !t.dirty.Load() {
			continue
		}
		if wait := time.Until(last.Add(t.cfg.CheckpointInterval)); wait > 0 {
			pause.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-pause.C:
			}
		}
		last = time.Now()
		t.persist()
	}
}

// persist writes the acknowledged offsets of every known file.
func (t *Tailer) persist() {
	if t.ckpt == nil {
		return
	}
	t.ckptMu.Lock()
	defer t.ckptMu.Unlock()
	t.dirty.Store(false)
	t.mu.Lock()
	all := t.ckptAll[:0] // reused under ckptMu: no garbage per write
	for _, f := range t.files {
		all = append(all, f)
	}
	t.mu.Unlock()
	doc := checkpointDoc{Input: t.name, Files: t.ckptFiles[:0]}
	for _, f := range all {
		f.mu.Lock()
		tr := f.tr
		c := checkpoint{
			Dev: f.key.dev, Ino: f.key.ino, FP: f.id.Fingerprint,
			MatchFP: f.mFP, MatchLen: f.mLen, Gen: tr.gen,
			Path: f.path, Seen: f.seen.Unix(), Size: f.size, Target: f.target,
		}
		// a deleted file released unread: its loss is counted already
		released := f.fd == nil && !f.deletedAt.IsZero()
		f.mu.Unlock()
		c.Offset, _ = tr.state()
		if f.ckptEnc == nil {
			f.ckptEnc = new(entryEnc)
		}
		c.enc = f.ckptEnc
		if released && c.Size > c.Offset {
			c.Size = c.Offset
		}
		doc.Files = append(doc.Files, c)
	}
	clear(all)
	t.ckptAll, t.ckptFiles = all[:0], doc.Files[:0]
	var err error
	t.ckptBuf, err = t.ckpt.save(&doc, t.ckptBuf)
	if err != nil {
		t.dirty.Store(true)
		t.stats.checkpointErrors.Add(1)
		t.log.Error("tail: writing the checkpoint failed", "path", t.ckpt.slots[t.ckpt.next], "error", err)
		return
	}
	t.stats.checkpoints.Add(1)
}
