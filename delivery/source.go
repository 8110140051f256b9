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
