package datadog

import (
	"encoding/binary"
	"encoding/json"
	"slices"

	"github.com/sidelog/sidelog/event"
)

// JSON sizes of the entry's keys with quotes and colon.
const (
	kSource    = len(`"ddsource":`)
	kTags      = len(`"ddtags":`)
	kHost      = len(`"hostname":`)
	kMessage   = len(`"message":`)
	kOriginal  = len(`"original_timestamp":`)
	kService   = len(`"service":`)
	kStatus    = len(`"status":`)
	kTimestamp = len(`"timestamp":`)
	kTruncated = len(`"truncated":`)
	// The largest values of the fields Write adds: a timestamp in ms, an
	// original_timestamp string ("2006-01-02T15:04:05.000Z"), true.
	maxTimestampLen = 20
	originalLen     = 26
)

// redatedTag is added to ddtags of an entry sent with the current time
// instead of its own (too_old: redate, or too far in the future), so that
// monitors can exclude replays.
const redatedTag = "sidelog_redated:true"

// Encode writes the buffered form of e (see frame.go): the attributes
// rendered now, the event time, and the message. Without message_key the
// message is the record as JSON (the intake parses a JSON message into
// attributes, as it does for the Datadog Agent's JSON logs); with it, the
// message is that field's text and the other fields are written as the
// entry's attributes (see encodeAttrs). A record whose entry would exceed
// MaxEntryBytes is truncated here and flagged.
func (o *Output) Encode(dst []byte, e *event.Event) ([]byte, error) {
	start := len(dst)
	var flags byte
	if e.Has(event.Truncated) {
		flags |= flagTruncated
	}
	var ns int64
	if !e.Time.IsZero() {
		ns = e.Time.UnixNano()
	}
	var fields map[string]any
	keyed := o.msgKey != ""
	if keyed && (e.HasFields() || e.Partial) {
		fields = e.Full()
	}
	dst = append(dst, frameV2, flags)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(ns))
	dst = append(dst, 0, 0, 0, 0) // message JSON length, patched below
	overhead := 2 + 9 /* commas */ + kMessage + kTimestamp + maxTimestampLen + kOriginal + originalLen + kTruncated + 4 + 1 + len(redatedTag)
	// service, source, hostname, tags, status; with message_key, a slot
	// left empty by its template takes the record's field of that name.
	var from [5]bool // the slot's value came from the record's field
	for i := range 5 {
		at := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		switch i {
		case 0:
			dst = o.service.append(dst, e)
			overhead += kService
		case 1:
			dst = o.source.append(dst, e)
			overhead += kSource
		case 2:
			// With message_key the record's own hostname wins over the
			// default (not over a configured template).
			var b []byte
			if fields != nil && o.cfg.Hostname == "" {
				b = appendScalar(dst, fields["hostname"])
			}
			if b != nil {
				dst, from[i] = b, true
			} else {
				dst = o.hostname.append(dst, e)
			}
			overhead += kHost
		case 3:
			dst = o.appendTags(dst, e)
			if fields != nil {
				if v, ok := fields["ddtags"].(string); ok && v != "" {
					if len(dst) > at+4 {
						dst = append(dst, ',')
					}
					dst, from[i] = append(dst, v...), true
				}
			}
			overhead += kTags
		case 4:
			dst = appendStatus(o.status.Append(dst, e), at+4)
			overhead += kStatus
		}
		if fields != nil && len(dst) == at+4 && i != 3 && !from[i] {
			if b := appendScalar(dst, fields[slotNames[i]]); b != nil {
				dst, from[i] = b, true
				if i == 4 {
					dst = appendStatus(dst, at+4)
				}
			}
		}
		binary.LittleEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
		overhead += jsonLen(dst[at+4:])
	}
	attrsAt := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	if fields != nil {
		dst = o.encodeAttrs(dst, fields, start, from)
		binary.LittleEndian.PutUint32(dst[attrsAt:], uint32(len(dst)-attrsAt-4))
	}
	attrsLen := len(dst) - attrsAt - 4
	msgAt := len(dst)
	if keyed && attrsLen > MaxEntryBytes-overhead-64<<10 {
		// The attributes alone (nearly) fill an entry: send the record as
		// JSON in message instead, cut as without message_key.
		dst = append(dst[:attrsAt], 0, 0, 0, 0)
		msgAt, keyed, attrsLen = len(dst), false, 0
	}
	budget := MaxEntryBytes - overhead - attrsLen
	var n int
	if !keyed {
		dst = event.AppendJSON(dst, e)
		if n = jsonLen(dst[msgAt:]); n > budget {
			dst, n = truncateRecord(dst, msgAt, e, budget)
			dst[start+1] |= flagTruncated
			o.truncated.Add(1)
		}
	} else {
		switch v := fields[o.msgKey].(type) {
		case nil:
			if fields == nil {
				dst = append(dst, e.Raw...) // an unparsed line
			}
		case string:
			dst = append(dst, v...)
		case []byte:
			dst = append(dst, v...)
		default:
			dst = event.AppendValue(dst, v)
		}
		if n = jsonLen(dst[msgAt:]); n > budget {
			dst = dst[:msgAt+fitPrefix(dst[msgAt:], budget)]
			n = jsonLen(dst[msgAt:])
			dst[start+1] |= flagTruncated
			o.truncated.Add(1)
		}
	}
	binary.LittleEndian.PutUint32(dst[start+10:], uint32(n))
	return dst, nil
}

// slotNames are the entry's reserved attributes, in frame order.
var slotNames = [5]string{"service", "ddsource", "hostname", "ddtags", "status"}

// appendScalar appends a scalar field value's text (a string as it is, a
// number or boolean as JSON) and returns nil when v is missing, null, empty
// or not a scalar.
func appendScalar(dst []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil
		}
		return append(dst, v...)
	case []byte:
		if len(v) == 0 {
			return nil
		}
		return append(dst, v...)
	case bool, float64, float32, int, int64, int32, uint64, uint32, json.Number:
		return event.AppendValue(dst, v)
	}
	return nil
}

// encodeAttrs writes the record's fields other than the message as the
// members of a JSON object (no braces), keys sorted. A field the entry
// already has (the message, timestamp, original_timestamp, truncated, or a
// reserved attribute that a template set) is kept under "record_<name>"; a
// field used as a reserved attribute is not repeated.
func (o *Output) encodeAttrs(dst []byte, fields map[string]any, frame int, from [5]bool) []byte {
	// The reserved slots just written, to know which are set.
	var set [5]bool
	p := frame + headerLen
	for i := range 5 {
		n := int(binary.LittleEndian.Uint32(dst[p:]))
		set[i] = n > 0
		p += 4 + n
	}
	var buf [32]string
	keys := buf[:0]
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	begin := len(dst)
	for _, k := range keys {
		if k == o.msgKey {
			continue
		}
		taken := false // the entry has a member of that name
		switch k {
		case "message", "timestamp", "original_timestamp", "truncated":
			taken = true
		default:
			if i := slices.Index(slotNames[:], k); i >= 0 {
				if from[i] {
					continue // it is the reserved attribute
				}
				taken = set[i]
			}
		}
		if len(dst) > begin {
			dst = append(dst, ',')
		}
		at := len(dst)
		dst = event.AppendString(dst, k)
		if taken { // "k" becomes "record_k"
			end := len(dst)
			dst = append(dst, "record_"...)
			copy(dst[at+8:], dst[at+1:end])
			copy(dst[at+1:], "record_")
		}
		dst = append(dst, ':')
		dst = event.AppendValue(dst, fields[k])
	}
	return dst
}

// appendTags writes the static tags and the rendered template tags,
// comma-separated. A template tag that renders empty or to "key:" (its field
// is missing) is left out; a comma inside a rendered value becomes '_'.
func (o *Output) appendTags(dst []byte, e *event.Event) []byte {
	begin := len(dst)
	dst = append(dst, o.staticTags...)
	for _, t := range o.tagTmpls {
		mark := len(dst)
		if mark > begin {
			dst = append(dst, ',')
		}
		from := len(dst)
		dst = t.Append(dst, e)
		v := dst[from:]
		if len(v) == 0 || v[len(v)-1] == ':' {
			dst = dst[:mark]
			continue
		}
		for i, c := range v {
			if c == ',' {
				v[i] = '_'
			}
		}
	}
	return dst
}

// appendStatus replaces the level rendered at dst[from:] by Datadog's name
// for it when it is a known spelling (WARNING → warn, 3 → error, ...);
// unknown values are sent as they are and mapped by the intake.
func appendStatus(dst []byte, from int) []byte {
	if s := statusName(dst[from:]); s != "" {
		return append(dst[:from], s...)
	}
	return dst
}

func statusName(v []byte) string {
	if len(v) == 0 || len(v) > 16 {
		return ""
	}
	var buf [16]byte
	l := buf[:len(v)]
	for i, c := range v {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		l[i] = c
	}
	switch string(l) {
	case "0", "emerg", "emergency", "panic", "fatal":
		return "emerg"
	case "1", "alert":
		return "alert"
	case "2", "crit", "critical":
		return "critical"
	case "3", "err", "error":
		return "error"
	case "4", "warn", "warning":
		return "warn"
	case "5", "notice":
		return "notice"
	case "6", "info", "information", "informational":
		return "info"
	case "7", "debug", "trace", "verbose":
		return "debug"
	case "ok", "success":
		return "ok"
	}
	return ""
}
