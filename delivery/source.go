package delivery

import (
	"encoding/binary"
	"strconv"

	"github.com/sidelog/sidelog/event"
)

// Source headers. When a Runner has SourceHeaders set, every buffered record
// starts with a header naming where its line came from: a uvarint length,
// then a JSON object {"input":…,"path":…,"offset":…}. The runner strips it
// before Output.Write (a sub-slice, no copy) and the dead-letter files
// write it as the line's "source", so a record that failed permanently can
// be traced back to its file and offset.

// AppendSource appends e's source header to dst.
func AppendSource(dst []byte, e *event.Event) []byte {
	var tmp [256]byte
	src := tmp[:0]
	src = append(src, `{"input":`...)
	src = event.AppendString(src, e.Input)
	src = append(src, `,"path":`...)
	src = event.AppendString(src, e.Path)
	src = append(src, `,"offset":`...)
	src = strconv.AppendInt(src, e.Pos.Offset, 10)
	src = append(src, '}')
	dst = binary.AppendUvarint(dst, uint64(len(src)))
	return append(dst, src...)
}

// SourceWriter appends the same headers as AppendSource, keeping the
// escaped input and path of the last record: the records of a read batch
// share them, so that per record only the offset is formatted. The zero
// value is ready; it is not safe for concurrent use.
type SourceWriter struct {
	input, path string
	prefix      []byte // {"input":…,"path":…,"offset":
}

// Append appends e's source header to dst, as AppendSource does.
func (w *SourceWriter) Append(dst []byte, e *event.Event) []byte {
	if w.prefix == nil || e.Input != w.input || e.Path != w.path {
		w.input, w.path = e.Input, e.Path
		p := append(w.prefix[:0], `{"input":`...)
		p = event.AppendString(p, e.Input)
		p = append(p, `,"path":`...)
		p = event.AppendString(p, e.Path)
		w.prefix = append(p, `,"offset":`...)
	}
	var num [20]byte
	off := strconv.AppendInt(num[:0], e.Pos.Offset, 10)
	dst = binary.AppendUvarint(dst, uint64(len(w.prefix)+len(off)+1))
	dst = append(dst, w.prefix...)
	dst = append(dst, off...)
	return append(dst, '}')
}

// SplitSource splits a record with a source header into the header's JSON
// and the output's record. A record without a valid header is returned
// whole, with a nil source.
func SplitSource(rec []byte) (source, payload []byte) {
	n, k := binary.Uvarint(rec)
	if k <= 0 || uint64(len(rec)-k) < n {
		return nil, rec
	}
	end := k + int(n)
	return rec[k:end], rec[end:]
}
