package buffer

import (
	"fmt"
	"os"
)

// recover scans the directory and sets the state from it.
func (d *Disk) recover() error {
	fsys := d.o.fs
	if err := fsys.MkdirAll(d.dir, 0o700); err != nil {
		return fmt.Errorf("buffer: %w", err)
	}
	r, segs, err := scan(fsys, d.dir)
	if err != nil {
		return fmt.Errorf("buffer: recovery: %w", err)
	}
	if r.LedgerErr != "" && r.LedgerErr != "missing" {
		d.log.Error("buffer ledger damaged: delivering every record on disk again", "ledger", d.path(ledgerName), "error", r.LedgerErr)
	}
	d.ackSeq = r.AckSeq
	d.ledgerAck, d.ledgerSync = r.AckSeq, r.AckSeq
	var maxSeq uint64
	var haveSeq bool
	var maxID uint64
	for _, s := range segs {
		maxID = max(maxID, s.id)
		if s.Frames > 0 {
			maxSeq, haveSeq = max(maxSeq, s.LastSeq), true
		}
		for _, br := range s.Bad {
			d.corrupt += br.Unacked
			d.corruptBytes += br.Length
			d.log.Warn("buffer: skipping damaged frames", "segment", br.Segment, "offset", br.Offset, "bytes", br.Length, "records", br.Records, "unacknowledged", br.Unacked)
		}
		if s.HeaderErr != "" {
			d.log.Warn("buffer: damaged segment header", "segment", s.Name, "error", s.HeaderErr)
		}
	}
	d.writeSeq = d.ackSeq
	if haveSeq {
		d.writeSeq = max(d.writeSeq, maxSeq+1)
	}
	d.writtenSeq = d.writeSeq
	d.readSeq = d.ackSeq
	// Keep segments holding unacknowledged records; remove the others.
	for i, s := range segs {
		if s.Unacked == 0 {
			if err := fsys.Remove(d.path(s.Name)); err != nil {
				d.log.Warn("buffer: cannot remove acknowledged segment", "segment", s.Name, "error", err)
			}
			continue
		}
		// A torn tail of the newest segment would be reported at every
		// start: cut it off (records in it were never acknowledged).
		if i == len(segs)-1 && s.tail {
			if f, err := fsys.OpenFile(d.path(s.Name), os.O_RDWR, 0); err == nil {
				if f.Truncate(s.goodEnd) == nil && f.Sync() == nil {
					s.Size = s.goodEnd
				}
				f.Close()
			}
		}
		first := s.FirstSeq
		d.segs = append(d.segs, &segment{id: s.id, firstSeq: first, written: s.Size, old: true})
	}
	_ = fsys.SyncDir(d.dir)
	d.records, d.bytes, d.unread = r.Records, r.UnackedBytes, r.Records
	if !r.OldestUnacked.IsZero() {
		d.marks = append(d.marks, timeMark{seq: d.ackSeq, ms: r.OldestUnacked.UnixMilli()})
	}
	d.nextID = maxID + 1
	if len(d.segs) > 0 {
		d.rseg, d.roff = d.segs[0].id, segHeaderSize
	}
	// The ledger.
	f, err := fsys.OpenFile(d.path(ledgerName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("buffer: ledger: %w", err)
	}
	d.ledgerF = f
	d.ledgerGen = 0
	if lb, err := readAll(fsys, d.path(ledgerName)); err == nil {
		if l, n := pickLedger(lb); n > 0 {
			d.ledgerGen = l.gen
		}
	}
	if r.LedgerSlots == 0 {
		if err := d.writeLedger(true); err != nil {
			return fmt.Errorf("buffer: ledger: %w", err)
		}
		_ = fsys.SyncDir(d.dir)
	}
	return nil
}
