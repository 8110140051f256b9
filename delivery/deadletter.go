package delivery

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sidelog/sidelog/datadir"
	"github.com/sidelog/sidelog/event"
)

// DefaultDeadLetterMaxBytes bounds each output's dead-letter directory.
const DefaultDeadLetterMaxBytes = 256 << 20

// DeadLetterFiles writes records that failed permanently to
// <data_dir>/dead-letter/<output>/<unix nanoseconds>.ndjson, one JSON object
// per line:
//
//	{"time":"2026-01-02T15:04:05.123Z","output":"es","reason":"...","record":{...}}
//
// "record" holds the output's encoded record when it is valid JSON
// (compacted to one line). A record made of two JSON lines, an action and a
// document (the elasticsearch output's bulk lines), is written readable:
// "action" holds the first, "record" the document. Anything else is written
// as "record_base64", its bytes in standard base64. Each write is fsynced
// before the batch is acknowledged. A file is closed at a quarter of
// MaxBytes (at most 16 MiB).
//
// When an output's files would exceed MaxBytes, WhenFull decides: "block"
// (the default) refuses the write with a BlockedError (reason
// dead_letter_full): the output pauses, shown as blocked, its records stay
// in the buffer, until files are replayed or removed; "drop_oldest" removes
// the oldest files, each record counted (OnEvict) and each file logged.
type DeadLetterFiles struct {
	dir      string
	maxBytes int64
	log      *slog.Logger
	// WhenFull is dead_letter.when_full: WhenFullBlock ("" too) or
	// WhenFullDropOldest.
	WhenFull string
	// SourceHeaders: records start with a source header (AppendSource),
	// written as the line's "source".
	SourceHeaders bool
	// OnEvict, if set, is told how many records of output were lost when
	// old files were removed to stay under MaxBytes.
	OnEvict func(output string, records int)
	now     func() time.Time

	mu   sync.Mutex
	outs map[string]*dlOutput
}

type dlOutput struct {
	f       *os.File
	name    string // current file
	size    int64  // of the current file
	total   int64  // of all files
	evicted int64  // records removed
	seq     int64
}

// NewDeadLetterFiles returns the dead-letter writer for every output under
// dataDir/dead-letter; maxBytes ≤ 0 means DefaultDeadLetterMaxBytes.
func NewDeadLetterFiles(dataDir string, maxBytes int64, logger *slog.Logger) *DeadLetterFiles {
	if maxBytes <= 0 {
		maxBytes = DefaultDeadLetterMaxBytes
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &DeadLetterFiles{dir: filepath.Join(dataDir, "dead-letter"), maxBytes: maxBytes, log: logger, now: time.Now, outs: map[string]*dlOutput{}}
}

// dead_letter.when_full values.
const (
	WhenFullBlock      = "block"
	WhenFullDropOldest = "drop_oldest"
)

// DeadLetterDir is the directory of output's dead-letter files.
func DeadLetterDir(dataDir, output string) string {
	return filepath.Join(dataDir, "dead-letter", output)
}

func (d *DeadLetterFiles) fileBytes() int64 { return min(d.maxBytes/4, 16<<20) }

// Evicted returns the number of records of output removed to respect
// MaxBytes since start.
func (d *DeadLetterFiles) Evicted(output string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if o := d.outs[output]; o != nil {
		return o.evicted
	}
	return 0
}

// AppendLine appends the dead-letter line of one record to dst.
func AppendLine(dst []byte, t time.Time, output, reason string, rec []byte) []byte {
	return appendLine(dst, t, output, reason, nil, rec)
}

// appendLine is AppendLine with the record's source (a JSON object, see
// AppendSource; nil: none).
func appendLine(dst []byte, t time.Time, output, reason string, source, rec []byte) []byte {
	dst = append(dst, `{"time":`...)
	dst = t.UTC().AppendFormat(append(dst, '"'), time.RFC3339Nano)
	dst = append(dst, `","output":`...)
	dst = event.AppendString(dst, output)
	dst = append(dst, `,"reason":`...)
	dst = event.AppendString(dst, reason)
	if len(source) > 0 && json.Valid(source) {
		dst = append(dst, `,"source":`...)
		dst = append(dst, source...)
	}
	if action, doc, ok := splitActionLine(rec); ok {
		var b bytes.Buffer
		if json.Compact(&b, action) == nil {
			dst = append(dst, `,"action":`...)
			dst = append(dst, b.Bytes()...)
			b.Reset()
			if json.Compact(&b, doc) == nil {
				dst = append(dst, `,"record":`...)
				dst = append(dst, b.Bytes()...)
				return append(dst, '}', '\n')
			}
		}
	}
	if json.Valid(rec) {
		var b bytes.Buffer
		if json.Compact(&b, rec) == nil {
			dst = append(dst, `,"record":`...)
			dst = append(dst, b.Bytes()...)
			return append(dst, '}', '\n')
		}
	}
	dst = append(dst, `,"record_base64":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, rec)
	return append(dst, '"', '}', '\n')
}

// splitActionLine splits a record of exactly two newline-terminated JSON
// objects, an action line and a document line.
func splitActionLine(rec []byte) (action, doc []byte, ok bool) {
	i := bytes.IndexByte(rec, '\n')
	if i < 0 || len(rec) < 2 || rec[len(rec)-1] != '\n' || i == len(rec)-1 {
		return nil, nil, false
	}
	action, doc = rec[:i], rec[i+1:len(rec)-1]
	if bytes.IndexByte(doc, '\n') >= 0 || len(action) == 0 || action[0] != '{' || !json.Valid(action) || !json.Valid(doc) {
		return nil, nil, false
	}
	return action, doc, true
}

// Write appends records with their reasons to output's current file and
// fsyncs it. With WhenFull block, a write that would pass MaxBytes returns
// a BlockedError instead.
func (d *DeadLetterFiles) Write(output string, recs [][]byte, reasons []string) error {
	if strings.ContainsAny(output, `/\`) || output == "" || output == "." || output == ".." {
		return fmt.Errorf("dead-letter: invalid output name %q", output)
	}
	now := d.now()
	var buf []byte
	for i, r := range recs {
		reason := ""
		if i < len(reasons) {
			reason = reasons[i]
		}
		if d.SourceHeaders {
			src, rec := SplitSource(r)
			buf = appendLine(buf, now, output, reason, src, rec)
			continue
		}
		buf = AppendLine(buf, now, output, reason, r)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o, err := d.open(output)
	if err != nil {
		return err
	}
	if d.WhenFull != WhenFullDropOldest && o.total > 0 && o.total+int64(len(buf)) > d.maxBytes {
		// Files may have been removed (replayed) since: count again.
		o.total = dirBytes(filepath.Join(d.dir, output))
		if o.total > 0 && o.total+int64(len(buf)) > d.maxBytes {
			return deadLetterFullError(filepath.Join(d.dir, output), o.total, d.maxBytes)
		}
	}
	if o.f != nil && o.size > 0 && o.size+int64(len(buf)) > d.fileBytes() {
		o.f.Close()
		o.f = nil
	}
	if o.f == nil {
		o.seq++
		o.name = filepath.Join(d.dir, output, fmt.Sprintf("%020d-%04d.ndjson", now.UnixNano(), o.seq%10000))
		f, err := os.OpenFile(o.name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("dead-letter: %w", err)
		}
		o.f, o.size = f, 0
		if err := datadir.SyncDir(filepath.Dir(o.name)); err != nil {
			return fmt.Errorf("dead-letter: %w", err)
		}
	}
	n, err := o.f.Write(buf)
	o.size += int64(n)
	o.total += int64(n)
	if err == nil {
		err = o.f.Sync()
	}
	if err != nil {
		// Cut a partial line so the file stays line-aligned.
		o.f.Truncate(o.size - int64(n))
		o.size -= int64(n)
		o.total -= int64(n)
		return fmt.Errorf("dead-letter: %w", err)
	}
	if d.WhenFull == WhenFullDropOldest {
		d.enforce(output, o)
	}
	return nil
}

func dirBytes(dir string) int64 {
	files, _ := listFiles(dir)
	var n int64
	for _, f := range files {
		n += f.size
	}
	return n
}

// open returns the state of output, reading its directory the first time.
func (d *DeadLetterFiles) open(output string) (*dlOutput, error) {
	if o := d.outs[output]; o != nil {
		return o, nil
	}
	dir := filepath.Join(d.dir, output)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dead-letter: %w", err)
	}
	o := &dlOutput{}
	files, err := listFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("dead-letter: %w", err)
	}
	for _, f := range files {
		o.total += f.size
	}
	d.outs[output] = o
	return o, nil
}

type dlFile struct {
	path string
	size int64
}

// listFiles returns the .ndjson files of dir, oldest first.
func listFiles(dir string) ([]dlFile, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []dlFile
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".ndjson") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, dlFile{path: filepath.Join(dir, e.Name()), size: info.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out, nil
}

// enforce removes the oldest files of output while its files exceed
// maxBytes, never the current one.
func (d *DeadLetterFiles) enforce(output string, o *dlOutput) {
	if o.total <= d.maxBytes {
		return
	}
	files, err := listFiles(filepath.Join(d.dir, output))
	if err != nil {
		return
	}
	for _, f := range files {
		if o.total <= d.maxBytes || f.path == o.name {
			break
		}
		lines := countLines(f.path)
		if err := os.Remove(f.path); err != nil {
			d.log.Error("dead-letter: cannot remove an old file", "file", f.path, "error", err)
			return
		}
		o.total -= f.size
		o.evicted += int64(lines)
		d.log.Warn("dead-letter: dropped the oldest records to stay under dead_letter.max_bytes (when_full: drop_oldest)", "output", output, "file", f.path, "records", lines, "dropped_total", o.evicted)
		if d.OnEvict != nil {
			d.OnEvict(output, lines)
		}
	}
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte{'\n'})
}

// Close closes the open files.
func (d *DeadLetterFiles) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, o := range d.outs {
		if o.f != nil {
			errs = append(errs, o.f.Close())
			o.f = nil
		}
	}
	return errors.Join(errs...)
}

// Line is one parsed dead-letter line.
type Line struct {
	Time         time.Time       `json:"time"`
	Output       string          `json:"output"`
	Reason       string          `json:"reason"`
	Source       json.RawMessage `json:"source,omitempty"`
	Action       json.RawMessage `json:"action,omitempty"`
	Record       json.RawMessage `json:"record,omitempty"`
	RecordBase64 []byte          `json:"record_base64,omitempty"`
}

// Data returns the record's bytes as the output encoded them (a JSON record
// compacted).
func (l *Line) Data() []byte {
	if l.Action != nil && l.Record != nil {
		b := make([]byte, 0, len(l.Action)+len(l.Record)+2)
		b = append(append(b, l.Action...), '\n')
		return append(append(b, l.Record...), '\n')
	}
	if l.Record != nil {
		return l.Record
	}
	return l.RecordBase64
}

// ReplayBatch is the number of records Replay hands to send at once.
const ReplayBatch = 500

// Replay sends the dead-lettered records of output under dataDir again, oldest
// file first, in batches of at most ReplayBatch records. A file is removed
// once all its records were sent; when send fails, Replay stops and returns
// the error, keeping that file and the newer ones (records of the file that
// were sent before the failure are sent again by the next replay). Lines that
// cannot be parsed are reported in the error and the file is kept. Run it
// while the agent is stopped (`sidelog dead-letter replay --output NAME`); a
// running agent replays with DeadLetterFiles.Replay.
func Replay(dataDir, output string, send func([][]byte) error) (int, error) {
	files, err := listFiles(DeadLetterDir(dataDir, output))
	if err != nil {
		return 0, err
	}
	return replayFiles(files, send)
}

// Replay is Replay for a running agent: the output's current file is
// closed first (new dead letters go to a new file, not replayed now), and
// the replayed files stop counting towards MaxBytes (a when_full block
// ends). Records that fail again are dead-lettered again by the delivery
// loop if send is the runner's; with a plain Write, Replay stops at the
// first error and keeps the rest.
func (d *DeadLetterFiles) Replay(output string, send func([][]byte) error) (int, error) {
	if strings.ContainsAny(output, `/\`) || output == "" || output == "." || output == ".." {
		return 0, fmt.Errorf("dead-letter: invalid output name %q", output)
	}
	d.mu.Lock()
	last := ""
	if o := d.outs[output]; o != nil && o.f != nil {
		o.f.Close()
		o.f = nil
		last = o.name
	}
	files, err := listFiles(filepath.Join(d.dir, output))
	d.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if last != "" {
		n := 0
		for _, f := range files {
			if f.path <= last {
				files[n] = f
				n++
			}
		}
		files = files[:n]
	}
	sent, err := replayFiles(files, send)
	d.mu.Lock()
	if o := d.outs[output]; o != nil {
		o.total = dirBytes(filepath.Join(d.dir, output))
	}
	d.mu.Unlock()
	return sent, err
}

func replayFiles(files []dlFile, send func([][]byte) error) (int, error) {
	sent := 0
	for _, f := range files {
		n, err := replayFile(f.path, send)
		sent += n
		if err != nil {
			return sent, fmt.Errorf("dead-letter replay %s: %w", f.path, err)
		}
		if err := os.Remove(f.path); err != nil {
			return sent, err
		}
	}
	return sent, nil
}

func replayFile(path string, send func([][]byte) error) (int, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<30)
	var batch [][]byte
	sent, lineNo := 0, 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := send(batch); err != nil {
			return err
		}
		sent += len(batch)
		batch = nil
		return nil
	}
	for sc.Scan() {
		lineNo++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return sent, fmt.Errorf("line %d: %w", lineNo, err)
		}
		if l.Record == nil && l.RecordBase64 == nil {
			return sent, fmt.Errorf("line %d: no record", lineNo)
		}
		batch = append(batch, l.Data())
		if len(batch) >= ReplayBatch {
			if err := flush(); err != nil {
				return sent, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return sent, err
	}
	return sent, flush()
}
