package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output/sourceid"
)

// The buffered form of a record holds everything Write needs, so that a
// record read back from a disk buffer after a restart goes to the same
// topic with the same key and headers:
//
//	version byte (1)
//	uvarint len(topic), topic
//	uvarint len(key)+1 (0: no key), key
//	uvarint number of headers, then per header: uvarint len(name), name,
//	  uvarint len(value), value (the first one is sidelog-source-id when
//	  the record has a source id)
//	value: the record as JSON, to the end
//
// The topic and key are rendered when the record is encoded, from its
// fields and event time.

const (
	formatVersion  = 1
	sourceIDHeader = sourceid.Header
)

var (
	errEmptyTopic = errors.New("kafka: the topic template rendered an empty name for this record")
	errCorrupt    = errors.New("kafka: buffered record is not in the kafka output's format")
)

// Encode implements output.Output.
func (o *Output) Encode(dst []byte, e *event.Event) ([]byte, error) {
	start := len(dst)
	dst = append(dst, formatVersion)
	var tmp [256]byte

	name := o.topic.Append(tmp[:0], e)
	if len(name) == 0 {
		return dst[:start], errEmptyTopic
	}
	name = sanitizeTopic(name)
	dst = binary.AppendUvarint(dst, uint64(len(name)))
	dst = append(dst, name...)

	if o.key == nil {
		dst = append(dst, 0)
	} else {
		key := o.key.Append(tmp[:0], e)
		if len(key) == 0 {
			dst = append(dst, 0)
		} else {
			dst = binary.AppendUvarint(dst, uint64(len(key))+1)
			dst = append(dst, key...)
		}
	}

	id, hasID := o.idPrefix.Append(tmp[:0], e)
	n := len(o.headers)
	if hasID {
		n++
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	if hasID {
		dst = appendBytes(dst, sourceIDHeader)
		dst = appendBytes(dst, id)
	}
	for _, h := range o.headers {
		dst = appendBytes(dst, h.name)
		v := h.tpl.Append(tmp[:0], e)
		dst = appendBytes(dst, v)
	}
	return event.AppendJSON(dst, e), nil
}

func appendBytes[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// record is a decoded buffered record; its slices alias the buffered bytes.
type record struct {
	topic   []byte
	key     []byte // nil: no key
	headers []header
	value   []byte
}

type header struct{ name, value []byte }

// decode splits a buffered record (aliasing b).
func decode(b []byte) (r record, err error) {
	if len(b) == 0 || b[0] != formatVersion {
		return r, errCorrupt
	}
	b = b[1:]
	next := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, false
		}
		s := b[k : k+int(n)]
		b = b[k+int(n):]
		return s, true
	}
	var ok bool
	if r.topic, ok = next(); !ok || len(r.topic) == 0 {
		return r, errCorrupt
	}
	kl, k := binary.Uvarint(b)
	if k <= 0 || kl > uint64(len(b)-k)+1 {
		return r, errCorrupt
	}
	b = b[k:]
	if kl > 0 {
		r.key = b[:kl-1]
		b = b[kl-1:]
	}
	nh, k := binary.Uvarint(b)
	if k <= 0 || nh > uint64(len(b)) {
		return r, errCorrupt
	}
	b = b[k:]
	if nh > 0 {
		r.headers = make([]header, nh)
	}
	for i := range r.headers {
		if r.headers[i].name, ok = next(); !ok {
			return r, errCorrupt
		}
		if r.headers[i].value, ok = next(); !ok {
			return r, errCorrupt
		}
	}
	r.value = b
	return r, nil
}

// batchOverhead is the bytes of a record batch besides its records
// (franz-go counts the produce request's 4-byte array length with it).
const batchOverhead = 4 + 8 + 4 + 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4

// batchBytes is the size of a record batch holding only r, as franz-go
// counts it against the batch limit (and a broker against
// max.message.bytes, less 4 bytes): a record that does not fit alone fits
// in no batch.
func (r *record) batchBytes() int {
	l := 1 + 1 + 1 + // attributes, timestamp delta 0, offset delta 0
		varintLen(len(r.key)) + len(r.key) +
		varintLen(len(r.value)) + len(r.value) +
		varintLen(len(r.headers))
	for _, h := range r.headers {
		l += varintLen(len(h.name)) + len(h.name) + varintLen(len(h.value)) + len(h.value)
	}
	return batchOverhead + varintLen(l) + l
}

// varintLen is the length of n as a zig-zag varint.
func varintLen(n int) int {
	u := uint64(n) << 1
	l := 1
	for u >= 0x80 {
		u >>= 7
		l++
	}
	return l
}

func tooLarge(topic string, size, limit int) error {
	return fmt.Errorf("kafka: record of %d bytes (as a batch of one) exceeds topic %s's limit of %d bytes (max.message.bytes or max_message_bytes): it fits in no batch", size, topic, limit)
}
