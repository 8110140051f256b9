package estest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The strict parsing of _bulk bodies.

// op is a parsed bulk operation; err is a per-item parse error.
type op struct {
	Item
	errType, errReason string
	requireAlias       bool
}

// parseBulk checks and splits an NDJSON body; a non-empty second result is
// a whole-request error, as Elasticsearch reports for malformed bodies.
func parseBulk(body []byte, defIndex, defPipeline string, feat features) ([]op, string) {
	if len(body) == 0 {
		return nil, "request body is required"
	}
	if body[len(body)-1] != '\n' {
		return nil, "The bulk request must be terminated by a newline [\\n]"
	}
	var ops []op
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), len(body)+1)
	line := 0
	for sc.Scan() {
		line++
		a := sc.Bytes()
		if len(bytes.TrimSpace(a)) == 0 {
			continue
		}
		var o op
		m, perr := parseAction(a, feat)
		if perr != "" {
			return nil, fmt.Sprintf("Malformed action/metadata line [%d], %s", line, perr)
		}
		o.Op = m.op
		switch o.Op {
		case "index", "create", "delete":
		case "update":
			return nil, fmt.Sprintf("estest: the update action (line %d) is not implemented", line)
		default:
			return nil, fmt.Sprintf("Malformed action/metadata line [%d], expected one of [create, delete, index, update] but found [%s]", line, o.Op)
		}
		o.Index, o.Pipeline = defIndex, defPipeline
		if m.Index != nil {
			o.Index = *m.Index
		}
		if m.ID != nil {
			o.ID = *m.ID
		}
		if m.Pipeline != nil {
			o.Pipeline = *m.Pipeline
		}
		if m.Routing != nil {
			o.Routing = *m.Routing
		}
		o.requireAlias = m.RequireAlias
		if o.Op != "delete" {
			if !sc.Scan() {
				return nil, fmt.Sprintf("Validation Failed: 1: no requests added; the action on line [%d] has no source line", line)
			}
			line++
			o.Source = append([]byte(nil), sc.Bytes()...)
			switch {
			case !utf8.Valid(o.Source):
				o.errType, o.errReason = "document_parsing_exception", "[1:1] failed to parse: invalid UTF-8 start byte"
			case !isObject(o.Source):
				o.errType, o.errReason = "document_parsing_exception", fmt.Sprintf("[1:1] failed to parse: source line [%d] is not a JSON object", line)
			}
		} else if o.ID == "" {
			o.errType, o.errReason = "action_request_validation_exception", "Validation Failed: 1: id is missing;"
		}
		if o.Index == "" {
			o.errType, o.errReason = "action_request_validation_exception", "Validation Failed: 1: index is missing;"
		} else if bad := invalidIndex(o.Index); bad != "" {
			o.errType, o.errReason = "invalid_index_name_exception", "Invalid index name ["+o.Index+"], "+bad
		}
		ops = append(ops, o)
	}
	if len(ops) == 0 {
		return nil, "Validation Failed: 1: no requests added;"
	}
	return ops, ""
}

// actionMeta is a parsed action line.
type actionMeta struct {
	op                           string
	Index, ID, Pipeline, Routing *string
	// RequireAlias is require_alias: the target must be an alias (estest
	// has none, so such an item fails as Elasticsearch fails it for a
	// concrete or missing index).
	RequireAlias bool
}

// parseAction parses an action line strictly: one JSON object holding one
// operation whose value is an object of known metadata keys with string
// values.
func parseAction(a []byte, feat features) (actionMeta, string) {
	if m, ok := fastAction(a); ok {
		return m, ""
	}
	return parseActionSlow(a, feat)
}

// parseActionSlow is parseAction with encoding/json.
func parseActionSlow(a []byte, feat features) (actionMeta, string) {
	var action map[string]json.RawMessage
	if err := json.Unmarshal(a, &action); err != nil {
		return actionMeta{}, fmt.Sprintf("expected START_OBJECT: %v", err)
	}
	if len(action) != 1 {
		return actionMeta{}, fmt.Sprintf("expected a single operation, found %d", len(action))
	}
	var m actionMeta
	var meta json.RawMessage
	for k, v := range action {
		m.op, meta = k, v
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(meta, &fields); err != nil {
		return actionMeta{}, fmt.Sprintf("expected START_OBJECT after [%s]: %v", m.op, err)
	}
	for k, v := range fields {
		var dst **string
		switch k {
		case "_index":
			dst = &m.Index
		case "_id":
			dst = &m.ID
		case "pipeline":
			dst = &m.Pipeline
		case "routing":
			dst = &m.Routing
		case "require_data_stream":
			if !feat.requireDataStream {
				return actionMeta{}, fmt.Sprintf("contains an unknown parameter [%s]", k)
			}
			fallthrough
		case "require_alias":
			// Booleans (Elasticsearch 7.10+, 8.13+). require_data_stream
			// is accepted, its check is not emulated.
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				return actionMeta{}, fmt.Sprintf("action [%s]: parameter [%s] has a wrong type: %v", m.op, k, err)
			}
			if k == "require_alias" {
				m.RequireAlias = b
			}
			continue
		case "dynamic_templates":
			if !feat.dynamicTemplates {
				// What OpenSearch answers (it forked before 7.13).
				return actionMeta{}, fmt.Sprintf("expected a simple value for field [%s] but found [START_OBJECT]", k)
			}
			// An object of field → template name (Elasticsearch 7.13+);
			// estest has no mappings, so it is checked and ignored.
			var dt map[string]string
			if err := json.Unmarshal(v, &dt); err != nil {
				return actionMeta{}, fmt.Sprintf("action [%s]: parameter [%s] has a wrong type: %v", m.op, k, err)
			}
			continue
		default:
			return actionMeta{}, fmt.Sprintf("contains an unknown parameter [%s]", k)
		}
		var str string
		if err := json.Unmarshal(v, &str); err != nil {
			return actionMeta{}, fmt.Sprintf("action [%s]: parameter [%s] has a wrong type: %v", m.op, k, err)
		}
		*dst = &str
	}
	return m, ""
}

// fastAction parses the compact form clients write,
// {"op":{"key":"value",...}}, with plain strings (no escapes); ok is false
// for anything else, which parseAction then checks the slow way.
func fastAction(a []byte) (m actionMeta, ok bool) {
	str := func(b []byte) (string, []byte, bool) {
		if len(b) < 2 || b[0] != '"' {
			return "", nil, false
		}
		end := bytes.IndexByte(b[1:], '"')
		if end < 0 || bytes.IndexByte(b[1:1+end], '\\') >= 0 {
			return "", nil, false
		}
		return string(b[1 : 1+end]), b[2+end:], true
	}
	if len(a) < 2 || a[0] != '{' {
		return m, false
	}
	op, rest, ok := str(a[1:])
	if !ok || !bytes.HasPrefix(rest, []byte(":{")) {
		return m, false
	}
	m.op = op
	rest = rest[2:]
	for len(rest) > 0 && rest[0] != '}' {
		k, r, ok := str(rest)
		if !ok || len(r) == 0 || r[0] != ':' {
			return m, false
		}
		v, r, ok := str(r[1:])
		if !ok {
			return m, false
		}
		switch k {
		case "_index":
			m.Index = &v
		case "_id":
			m.ID = &v
		case "pipeline":
			m.Pipeline = &v
		case "routing":
			m.Routing = &v
		default:
			return m, false
		}
		if len(r) > 0 && r[0] == ',' {
			r = r[1:]
			if len(r) == 0 || r[0] != '"' {
				return m, false
			}
		}
		rest = r
	}
	return m, string(rest) == "}}"
}

// isObject reports whether b is one valid JSON object.
func isObject(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r")
	return len(t) > 0 && t[0] == '{' && json.Valid(b)
}

func invalidIndex(name string) string {
	switch {
	case name != strings.ToLower(name):
		return "must be lowercase"
	case strings.ContainsAny(name, "\\/*?\"<>| ,#:"):
		return `must not contain the following characters [ , ", *, \, <, |, ,, >, /, ?, #, :]`
	case strings.HasPrefix(name, "-") || strings.HasPrefix(name, "_") || strings.HasPrefix(name, "+"):
		return "must not start with '_', '-', or '+'"
	case name == "." || name == "..":
		return "must not be '.' or '..'"
	case len(name) > 255:
		return "index name is too long, (" + strconv.Itoa(len(name)) + " > 255)"
	}
	return ""
}
