package tail

import (
	"sort"
	"sync/atomic"
)

type counters struct {
	bytesRead        atomic.Uint64
	linesRead        atomic.Uint64
	rotations        atomic.Uint64
	truncations      atomic.Uint64
	lost             [nLoss]atomic.Uint64 // bytes given up, by reason
	openErrors       atomic.Uint64
	readErrors       atomic.Uint64
	idleClosed       atomic.Uint64
	deferred         atomic.Uint64
	ignored          atomic.Uint64
	touchScans       atomic.Uint64
	opened           atomic.Uint64
	closed           atomic.Uint64
	checkpoints      atomic.Uint64
	checkpointErrors atomic.Uint64
	missedEvents     atomic.Uint64
	scans            atomic.Uint64
}

// Stats is a snapshot of the input's metrics, for the metrics endpoint.
// Counters only grow; the other values are gauges.
type Stats struct {
	OpenFiles   int // files held open
	DeletedOpen int // deleted files still held open (not read to their end)
	KnownFiles  int // identities in the checkpoint (open and closed)

	BytesRead        uint64
	LinesRead        uint64
	Rotations        uint64            // renames and deletions noticed
	Truncations      uint64            // new generations (copytruncate, truncate)
	LostBytes        uint64            // bytes given up, every reason
	Lost             map[string]uint64 // bytes given up by reason (LossReasons)
	OpenErrors       uint64            // failed opens of matched files (retried at the next scan)
	ReadErrors       uint64            // failed reads (retried for max_read_error_hold)
	IdleClosed       uint64            // files closed as idle (close_inactive, max_open_files)
	DeferredOpens    uint64            // opens put off by max_open_files (every open file busy)
	IgnoredOld       uint64            // files skipped by ignore_older
	TouchScans       uint64            // looks at idle-closed files written (no full rescan)
	PeakOpenFiles    int               // the most log files held open at once
	FilesOpened      uint64
	FilesClosed      uint64
	Checkpoints      uint64 // checkpoint files written
	CheckpointErrors uint64
	// Scans counts rescans of the globs; MissedEvents the changes a
	// rescan found that fsnotify had not reported (each one keeps the
	// rescans at poll_interval for a while).
	Scans        uint64
	MissedEvents uint64

	InFlightBatches int64 // emitted batches not yet fully acknowledged

	Files []FileStats // open files, sorted by path
}

// FileStats describes one open file.
type FileStats struct {
	Path       string
	Size       int64
	Offset     int64 // bytes read
	Lag        int64 // unread bytes: Size - Offset
	Acked      int64 // checkpointed offset
	Generation uint32
	Deleted    bool
	Rotated    bool // renamed away from every matched path
}

// Stats returns the current metrics.
func (t *Tailer) Stats() Stats {
	s := Stats{
		BytesRead:        t.stats.bytesRead.Load(),
		LinesRead:        t.stats.linesRead.Load(),
		Rotations:        t.stats.rotations.Load(),
		Truncations:      t.stats.truncations.Load(),
		Lost:             make(map[string]uint64, nLoss),
		OpenErrors:       t.stats.openErrors.Load(),
		ReadErrors:       t.stats.readErrors.Load(),
		IdleClosed:       t.stats.idleClosed.Load(),
		DeferredOpens:    t.stats.deferred.Load(),
		IgnoredOld:       t.stats.ignored.Load(),
		TouchScans:       t.stats.touchScans.Load(),
		PeakOpenFiles:    int(t.peakOpen.Load()),
		FilesOpened:      t.stats.opened.Load(),
		FilesClosed:      t.stats.closed.Load(),
		Checkpoints:      t.stats.checkpoints.Load(),
		CheckpointErrors: t.stats.checkpointErrors.Load(),
		Scans:            t.stats.scans.Load(),
		MissedEvents:     t.stats.missedEvents.Load(),
		InFlightBatches:  t.inflight.Load(),
	}
	for i, r := range LossReasons {
		n := t.stats.lost[i].Load()
		s.Lost[r] = n
		s.LostBytes += n
	}
	t.mu.Lock()
	all := make([]*file, 0, len(t.files))
	for _, f := range t.files {
		all = append(all, f)
	}
	t.mu.Unlock()
	s.KnownFiles = len(all)
	for _, f := range all {
		f.mu.Lock()
		if f.fd == nil {
			f.mu.Unlock()
			continue
		}
		fs := FileStats{
			Path: f.path, Size: f.size, Offset: f.offset,
			Generation: f.tr.gen, Deleted: !f.deletedAt.IsZero(), Rotated: !f.rotatedAt.IsZero(),
		}
		tr := f.tr
		f.mu.Unlock()
		fs.Acked, _ = tr.state()
		if fs.Lag = fs.Size - fs.Offset; fs.Lag < 0 {
			fs.Lag = 0
		}
		s.OpenFiles++
		if fs.Deleted {
			s.DeletedOpen++
		}
		s.Files = append(s.Files, fs)
	}
	sort.Slice(s.Files, func(i, j int) bool { return s.Files[i].Path < s.Files[j].Path })
	return s
}
