package datadog

import (
	"bytes"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"
)

// The request body is written here from the buffered frames, byte for byte
// what the client's SubmitLog would send for the same []HTTPLogItem (its
// MarshalJSON puts the fields and additional properties in a map, so
// encoding/json writes the keys sorted; json.Encoder escapes HTML and ends
// with a newline). TestBodyMatchesClient checks that against the client's
// own encoder. SubmitLog would re-marshal every item by reflection through
// maps and gzip at the standard library's default level: that was 60% of
// the agent's CPU in the Datadog benchmark (see docs/output-datadog.md).

// gzipLevel: klauspost/compress's fastest level compresses these logs
// about as well as the standard library's default (which the client uses)
// at several times the speed; see BenchmarkGzipLevels.
const gzipLevel = gzip.BestSpeed

// gzipChunk: the body is fed to the gzip writer in chunks of about this
// size, so that the uncompressed body (up to 5 MB) is never held whole.
const gzipChunk = 64 << 10

var gzipWriters sync.Pool // *gzip.Writer

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as encoding/json writes a string (HTML
// escaping on, invalid UTF-8 as \ufffd, U+2028/U+2029 escaped): jsonLen(s)
// bytes.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if escLen[b] == 1 {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default: // controls and <, >, &
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendEntry appends the JSON object of one entry: ent.size bytes. The
// keys are in the order encoding/json writes a map's (sorted), then the
// attributes of message_key.
func appendEntry(dst []byte, ent *entry) []byte {
	dst = append(dst, '{')
	if ent.source != "" {
		dst = append(dst, `"ddsource":`...)
		dst = appendJSONString(dst, ent.source)
		dst = append(dst, ',')
	}
	switch {
	case ent.original && ent.tags != "":
		dst = append(dst, `"ddtags":`...)
		dst = appendJSONString(dst, ent.tags)
		dst = append(dst[:len(dst)-1], `,`+redatedTag+`",`...)
	case ent.original:
		dst = append(dst, `"ddtags":"`+redatedTag+`",`...)
	case ent.tags != "":
		dst = append(dst, `"ddtags":`...)
		dst = appendJSONString(dst, ent.tags)
		dst = append(dst, ',')
	}
	if ent.hostname != "" {
		dst = append(dst, `"hostname":`...)
		dst = appendJSONString(dst, ent.hostname)
		dst = append(dst, ',')
	}
	dst = append(dst, `"message":`...)
	dst = appendJSONString(dst, ent.msg)
	if ent.original {
		dst = append(dst, `,"original_timestamp":"`...)
		dst = time.Unix(0, ent.unixNano).UTC().AppendFormat(dst, originalLayout)
		dst = append(dst, '"')
	}
	if ent.service != "" {
		dst = append(dst, `,"service":`...)
		dst = appendJSONString(dst, ent.service)
	}
	if ent.status != "" {
		dst = append(dst, `,"status":`...)
		dst = appendJSONString(dst, ent.status)
	}
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, ent.timestamp, 10)
	if ent.flags&flagTruncated != 0 {
		dst = append(dst, `,"truncated":true`...)
	}
	if ent.attrs != "" {
		// message_key: the record's other fields, after the entry's own
		// (the keys of the entry without them are sorted, as the client's
		// encoder writes them).
		dst = append(dst, ',')
		dst = append(dst, ent.attrs...)
	}
	return append(dst, '}')
}

// makeBody writes the request body of ents into s.body, gzip-compressed when
// compress is set (then s.body holds the compressed bytes). It returns the
// body and its uncompressed size.
func (s *scratch) makeBody(ents []entry, compress bool) (body []byte, size int) {
	if !compress {
		b := append(s.body[:0], '[')
		for i := range ents {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendEntry(b, &ents[i])
		}
		b = append(b, ']', '\n')
		s.body = b
		return b, len(b)
	}
	z := &s.z
	*z = *bytes.NewBuffer(s.body[:0])
	gw, _ := gzipWriters.Get().(*gzip.Writer)
	if gw == nil {
		gw, _ = gzip.NewWriterLevel(z, gzipLevel)
	} else {
		gw.Reset(z)
	}
	c := append(s.chunk[:0], '[')
	for i := range ents {
		if i > 0 {
			c = append(c, ',')
		}
		c = appendEntry(c, &ents[i])
		if len(c) >= gzipChunk {
			size += len(c)
			_, _ = gw.Write(c) // a bytes.Buffer does not fail
			c = c[:0]
		}
	}
	c = append(c, ']', '\n')
	size += len(c)
	_, _ = gw.Write(c)
	_ = gw.Close()
	gw.Reset(nil) // do not keep s.z reachable from the pool
	gzipWriters.Put(gw)
	if cap(c) > 4*gzipChunk {
		c = nil // after a huge entry: do not keep a large chunk pooled
	}
	s.chunk = c[:0]
	s.body = z.Bytes()
	return s.body, size
}
