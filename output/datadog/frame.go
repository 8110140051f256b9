package datadog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// The buffered form of one record (what Encode writes and Write reads). It
// may sit in a disk buffer across restarts and upgrades, so it carries a
// version and everything the request needs:
//
//	[0]      version (frameV2; frameV1 is still read)
//	[1]      flags (flagTruncated)
//	[2:10]   event time, Unix nanoseconds, little endian (0: unknown)
//	[10:14]  length of the message as a JSON string (uint32 LE)
//	then service, ddsource, hostname, ddtags, status: each uint32 LE length + bytes
//	then (v2 only) the attributes: uint32 LE length + a JSON object's
//	  members without braces (`"k":v,"k2":v2`; empty without message_key)
//	then the message up to the end: the record as JSON, or with
//	  message_key the message field's text
const (
	frameV1       = 1
	frameV2       = 2
	flagTruncated = 1 << 0
	headerLen     = 14
)

// entry is a decoded frame. Its strings alias the batch's bytes: they are
// valid only during the Write call that decoded them.
type entry struct {
	idx       int // index in the batch
	flags     byte
	unixNano  int64
	msgJSON   int // jsonLen(msg)
	service   string
	source    string
	hostname  string
	tags      string
	status    string
	attrs     string // JSON members of the record's other fields (message_key)
	msg       string
	size      int   // the entry's JSON size in the request
	timestamp int64 // ms, as sent
	original  bool  // timestamp replaced: send original_timestamp and the redated tag
	retimed   int8  // 0, or +1 (too far in the future), -1 (too old)
}

var errFrame = errors.New("datadog: record is not a datadog-encoded record")

// appendLenPrefixed reserves a 4-byte length, calls fill, patches the length.
func appendLenPrefixed(dst []byte, fill func([]byte) []byte) []byte {
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = fill(dst)
	binary.LittleEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return dst
}

func bstr(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// decodeFrame reads a frame; the strings of the entry alias rec.
func decodeFrame(rec []byte, ent *entry) error {
	if len(rec) < headerLen {
		return fmt.Errorf("%w (%d bytes)", errFrame, len(rec))
	}
	if rec[0] != frameV1 && rec[0] != frameV2 {
		return fmt.Errorf("%w (version %d)", errFrame, rec[0])
	}
	ent.flags = rec[1]
	ent.unixNano = int64(binary.LittleEndian.Uint64(rec[2:]))
	ent.msgJSON = int(binary.LittleEndian.Uint32(rec[10:]))
	p := rec[headerLen:]
	ent.attrs = ""
	fields := [...]*string{&ent.service, &ent.source, &ent.hostname, &ent.tags, &ent.status, &ent.attrs}
	n := len(fields)
	if rec[0] == frameV1 {
		n-- // no attributes
	}
	for _, f := range fields[:n] {
		if len(p) < 4 {
			return fmt.Errorf("%w (short)", errFrame)
		}
		n := int(binary.LittleEndian.Uint32(p))
		if n > len(p)-4 {
			return fmt.Errorf("%w (bad length)", errFrame)
		}
		*f = bstr(p[4 : 4+n])
		p = p[4+n:]
	}
	ent.msg = bstr(p)
	if ent.msgJSON < 2 {
		ent.msgJSON = jsonLen(ent.msg)
	}
	return nil
}
