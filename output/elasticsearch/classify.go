package elasticsearch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/output"
)

// Errors are classified by the engine's error.type, not by the HTTP status
// alone (a missing pipeline and a mapping error are both 400; a write block
// is 403, or 429 at the flood-stage watermark):
//
//   - document errors (mapper_parsing_exception, document_parsing_exception,
//     strict_dynamic_mapping_exception, an illegal value on a field, any
//     other 4xx item error): the record is refused for good and goes to
//     the dead-letter file with the engine's type and reason;
//   - configuration errors (cluster_block_exception, index_not_found_exception,
//     security_exception, index_closed_exception, a missing ingest
//     pipeline, op_type index into a data stream, any 401/403): nothing is
//     the record's fault, so it is never dead-lettered: the index it goes to
//     is blocked (delivery.BlockedOn), its records stay in the buffer and
//     are retried with backoff, and records of other indices keep flowing;
//   - 429 otherwise: throttled; 5xx: retried.

// maxRetryAfter caps a server's Retry-After: a proxy asking for an hour
// must not stall the output that long (the delivery loop retries at
// least this often, with its own backoff).
const maxRetryAfter = time.Minute

// configReason returns the blocked reason for a configuration error, ""
// for any other.
func configReason(status int, typ, reason string) string {
	switch typ {
	case "cluster_block_exception", "index_not_found_exception", "security_exception", "index_closed_exception":
		return typ
	case "illegal_argument_exception":
		switch {
		case strings.HasPrefix(reason, "pipeline with id [") && strings.HasSuffix(reason, "] does not exist"):
			return "missing_pipeline"
		case strings.Contains(reason, "only write ops with an op_type of create are allowed in data streams"):
			return "data_stream_op_type"
		}
	}
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		if typ == "" {
			return "security_exception"
		}
		return typ
	}
	return ""
}

// requestError classifies a non-2xx answer to a whole request.
func (o *Output) requestError(status int, h http.Header, body []byte, n int) error {
	err := fmt.Errorf("%s: bulk request of %d documents: HTTP %d%s", o.kind, n, status, o.redact(reasonOf(body)))
	typ, reason := errorOf(body)
	if r := configReason(status, typ, reason); r != "" {
		// Credentials, privileges, a cluster-wide block: the whole output
		// waits for the fix.
		return delivery.Blocked(r, err)
	}
	switch {
	case status == http.StatusTooManyRequests:
		return output.ThrottledError(err, retryAfter(h.Get("Retry-After")))
	default:
		// 413: the caller splits, permanent at one record. 5xx, and
		// 400/404/other 4xx that concern the request (a proxy's answer,
		// a parameter the server does not know): never dead-letter a
		// whole batch for them; retry until it is fixed.
		return err
	}
}

// errorOf returns error.type and error.reason of an error body.
func errorOf(body []byte) (typ, reason string) {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return "", ""
	}
	return typeReason(e.Error)
}

// typeReason reads an error object's type and reason.
func typeReason(raw json.RawMessage) (typ, reason string) {
	var e struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &e) != nil {
		return "", ""
	}
	return e.Type, e.Reason
}

// reasonOf extracts ": type: reason" from an Elasticsearch error body.
func reasonOf(body []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Error) == 0 {
		if len(body) > 0 && len(body) < 200 && bytes.IndexByte(body, '{') < 0 {
			return ": " + string(bytes.TrimSpace(body))
		}
		return ""
	}
	return ": " + errorText(e.Error)
}

// retryAfter reads a Retry-After header (seconds or an HTTP date), capped
// at maxRetryAfter.
func retryAfter(v string) time.Duration {
	var d time.Duration
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		d = time.Duration(min(s, int(maxRetryAfter/time.Second)+1)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(time.Until(t), 0)
	}
	return min(d, maxRetryAfter)
}

// classify returns nil for a delivered item, else its classified error.
// index is the index the record's action line names (the answer's _index
// is a backing index for a data stream).
func (it *bulkItem) classify(kind, index string) error {
	s := it.Status
	switch {
	case s >= 200 && s <= 299:
		return nil
	case s == http.StatusConflict && it.op == "create":
		return nil // already there: delivered earlier
	}
	err := fmt.Errorf("%s: %s into index [%s] refused with status %d: %s", kind, it.op, it.Index, s, errorText(it.Error))
	typ, reason := typeReason(it.Error)
	if r := configReason(s, typ, reason); r != "" {
		if index == "" {
			index = it.Index
		}
		return delivery.BlockedOn(index, r, err)
	}
	switch {
	case s == http.StatusTooManyRequests:
		return output.ThrottledError(err, 0)
	case s >= 500 || s == 0:
		return err
	default:
		return output.PermanentError(err)
	}
}

// actionIndex returns the _index of a buffered record's action line, ""
// if it has none (index names are sanitised at encoding: no quote or
// backslash inside).
func actionIndex(rec []byte) string {
	nl := bytes.IndexByte(rec, '\n')
	if nl < 0 {
		nl = len(rec)
	}
	a := rec[:nl]
	i := bytes.Index(a, []byte(`"_index":"`))
	if i < 0 {
		return ""
	}
	a = a[i+len(`"_index":"`):]
	j := bytes.IndexByte(a, '"')
	if j < 0 {
		return ""
	}
	return string(a[:j])
}

// errorText renders an Elasticsearch error object as "type: reason (caused
// by: type: reason)".
func errorText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "no reason given"
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var e struct {
		Type     string          `json:"type"`
		Reason   string          `json:"reason"`
		CausedBy json.RawMessage `json:"caused_by"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return string(raw)
	}
	t := e.Type + ": " + e.Reason
	if len(e.CausedBy) > 0 && string(e.CausedBy) != "null" {
		t += " (caused by: " + errorText(e.CausedBy) + ")"
	}
	return t
}
