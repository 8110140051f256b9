package elasticsearch

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output/sourceid"
)

// The buffered form of a record is exactly the two lines it contributes to a
// _bulk body, each ending with '\n':
//
//	{"index":{"_index":"app-checkout-2024.02.29","_id":"…","pipeline":"…"}}
//	{"@timestamp":"2024-02-29T23:04:05.123Z", …the record…}
//
// Everything delivery needs is inside: the op type, the index rendered from
// the event time at encoding (so a retry, even after a restart, goes to the
// same index), the stable _id and the pipeline. Write only concatenates.

var errEmptyIndex = errors.New("elasticsearch: the index template rendered an empty name for this record")

func nonASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// checkIndexName returns why a sanitised index name is still one
// Elasticsearch and OpenSearch refuse (sanitizeIndex has lowered it and
// replaced the characters they refuse), nil if it is valid.
func checkIndexName(b []byte) error {
	switch {
	case len(b) == 0:
		return errors.New("the name is empty")
	case b[0] == '-' || b[0] == '_' || b[0] == '+':
		return fmt.Errorf("an index name must not start with %q", b[0])
	case string(b) == "." || string(b) == "..":
		return errors.New("an index name must not be . or ..")
	case len(b) > 255:
		return fmt.Errorf("an index name is at most 255 bytes, this one has %d", len(b))
	}
	return nil
}

// Encode implements output.Output.
func (o *Output) Encode(dst []byte, e *event.Event) ([]byte, error) {
	start := len(dst)
	dst = append(dst, o.actionPrefix...)
	idx := len(dst)
	dst = o.index.Append(dst, e)
	if len(dst) == idx {
		return dst[:start], errEmptyIndex
	}
	sanitizeIndex(dst[idx:])
	if nonASCII(dst[idx:]) {
		// Elasticsearch wants the name lower case in every script: a
		// rare path (the lowered name may change length).
		if low := bytes.ToLower(dst[idx:]); !bytes.Equal(low, dst[idx:]) {
			dst = append(dst[:idx], low...)
		}
	}
	if err := checkIndexName(dst[idx:]); err != nil {
		return dst[:start], fmt.Errorf("%s: the index template %q rendered the index name %q for this record: %v", o.kind, o.cfg.indexTemplate(), dst[idx:], err)
	}
	idxEnd := len(dst)
	dst = append(dst, '"')
	idDone := false
	if o.idKey != nil {
		// id_key: the record's own id, when it has one.
		var scratch [256]byte
		if v := o.idKey.Append(scratch[:0], e); len(v) > 0 {
			dst = append(dst, `,"_id":`...)
			dst = event.AppendString(dst, v)
			idDone = true
		}
	}
	if o.stableID && !idDone {
		if e.ID != "" {
			// An id the input gave (the kafka input: the agent's
			// source-id header): kept, escaped.
			dst = append(dst, `,"_id":`...)
			if len(e.ID) <= sourceid.MaxLen {
				dst = event.AppendString(dst, e.ID)
			} else {
				var scratch [64]byte
				id, _ := o.idPrefix.Append(scratch[:0], e)
				dst = event.AppendString(dst, id)
			}
		} else if id, ok := o.idPrefix.FromPosition(e.Pos); ok {
			dst = append(dst, `,"_id":"`...)
			dst = append(dst, id[:]...)
			dst = append(dst, '"')
		}
	}
	if o.routing != nil {
		var scratch [256]byte
		if v := o.routing.Append(scratch[:0], e); len(v) > 0 {
			dst = append(dst, `,"routing":`...)
			dst = event.AppendString(dst, v)
		}
	}
	dst = append(dst, o.actionSuffix...)

	doc := len(dst)
	if o.ecs == nil && !hasTimestamp(e) {
		return o.appendStamped(dst, e), nil
	}
	dst = appendDoc(dst, e)
	if o.ecs != nil {
		dst = o.ecs.apply(dst, doc, e, dst[idx:idxEnd])
	}
	if !hasTimestamp(e) {
		var ts [64]byte
		dst = spliceTimestamp(dst, doc, timestampMember(ts[:0], e.Time))
	}
	return append(dst, '\n'), nil
}

// appendDoc appends e's JSON, on one line: valid JSON holds '\n' only as
// whitespace between tokens (a pretty-printed object joined by
// multiline), which would end the NDJSON line, so it becomes a space.
func appendDoc(dst []byte, e *event.Event) []byte {
	doc := len(dst)
	dst = event.AppendJSON(dst, e)
	for i := doc; ; {
		j := bytes.IndexByte(dst[i:], '\n')
		if j < 0 {
			break
		}
		dst[i+j] = ' '
		i += j + 1
	}
	return dst
}

// appendStamped appends e's document line with "@timestamp" spliced in
// as its first member, for a record without one and no ECS layout. It
// writes the member before the document instead of moving the document
// to make room: the member with its comma takes the place reserved for
// it in front, and the document's own '{' becomes the comma after it.
// A document that does not start with '{' and a member (an empty object,
// whitespace, not an object) takes spliceTimestamp's way, with the same
// bytes as the result.
func (o *Output) appendStamped(dst []byte, e *event.Event) []byte {
	var ts [64]byte
	ins := timestampMember(ts[:0], e.Time)
	doc := len(dst)
	// '{' + ins + ',' takes the len(ins)+1 bytes reserved in front and
	// the document's own '{'.
	dst = append(dst, ins...)
	dst = append(dst, ',')
	body := len(dst)
	dst = appendDoc(dst, e)
	if len(dst) > body+1 && dst[body] == '{' && !isJSONSpace(dst[body+1]) && dst[body+1] != '}' {
		dst[doc] = '{'
		copy(dst[doc+1:], ins)
		dst[body] = ','
		return append(dst, '\n')
	}
	dst = append(dst[:doc], dst[body:]...)
	return append(spliceTimestamp(dst, doc, ins), '\n')
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// timestampMember appends `"@timestamp":"<t>"`: t in UTC, RFC3339Nano, the
// current time for a zero t.
func timestampMember(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		t = time.Now()
	}
	dst = append(dst, `"@timestamp":"`...)
	dst = appendTimestamp(dst, t)
	return append(dst, '"')
}

// hasTimestamp reports whether the record has its own @timestamp (Field
// sees the overlay: a removed @timestamp is absent).
func hasTimestamp(e *event.Event) bool {
	if _, ok := e.Known("@timestamp"); ok {
		return true
	}
	if e.KnownAbsent("@timestamp") {
		return false // the parser looked for it (a selected key of this output)
	}
	// Most lines have no "@timestamp" at all: one memchr-speed search
	// says so before Field walks the raw object.
	if e.Flags&event.RawJSON != 0 && !quotedTimestamp(e.Raw) {
		return false
	}
	_, ok := e.Field("@timestamp")
	return ok
}

// quotedTimestamp reports whether `"@timestamp"` occurs in raw. It looks
// for the rare '@' first: bytes.Contains would start from the quote, which
// a JSON line holds every few bytes.
func quotedTimestamp(raw []byte) bool {
	const rest = `@timestamp"`
	for i := 1; i < len(raw); {
		j := bytes.Index(raw[i:], []byte(rest))
		if j < 0 {
			return false
		}
		if raw[i+j-1] == '"' {
			return true
		}
		i += j + 1
	}
	return false
}

// spliceTimestamp inserts the member ins ("@timestamp":"<t>") as the first
// member of the JSON object that starts at dst[doc:], without
// re-serialising it.
func spliceTimestamp(dst []byte, doc int, member []byte) []byte {
	open := doc
	for open < len(dst) && (dst[open] == ' ' || dst[open] == '\t' || dst[open] == '\r') {
		open++
	}
	if open == len(dst) || dst[open] != '{' {
		return dst // not an object: leave it to Elasticsearch to refuse
	}
	var buf [72]byte
	ins := append(buf[:0], member...)
	rest := open + 1
	for rest < len(dst) && (dst[rest] == ' ' || dst[rest] == '\t' || dst[rest] == '\r') {
		rest++
	}
	if rest < len(dst) && dst[rest] != '}' {
		ins = append(ins, ',')
	}
	n := len(ins)
	dst = append(dst, ins...) // grow by n
	copy(dst[open+1+n:], dst[open+1:len(dst)-n])
	copy(dst[open+1:], ins)
	return dst
}

// sanitizeIndex rewrites a rendered index name in place into one that
// Elasticsearch accepts and that is safe inside a JSON string: ASCII
// upper case is lowered; characters Elasticsearch refuses, control bytes and
// invalid UTF-8 become '_'.
// indexASCII maps an ASCII byte of a rendered index name to what
// sanitizeIndex writes: lower case for upper, '_' for a control character
// or one of invalidIndexChars, the byte itself otherwise.
var indexASCII = func() (t [utf8.RuneSelf]byte) {
	for c := range utf8.RuneSelf {
		b := byte(c)
		switch {
		case b >= 'A' && b <= 'Z':
			b += 'a' - 'A'
		case b < 0x20 || b == 0x7f || strings.IndexByte(invalidIndexChars, b) >= 0:
			b = '_'
		}
		t[c] = b
	}
	return t
}()

func sanitizeIndex(b []byte) {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			b[i] = indexASCII[c]
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			b[i] = '_'
			i++
			continue
		}
		i += n
	}
}
