package estest

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// What differs between the servers estest stands in for, index templates
// and data streams.

// features is what the emulated server knows.
type features struct {
	root string // the GET / body
	// productHeader: X-Elastic-Product (Elasticsearch >= 7.14).
	productHeader bool
	// requireDataStream: the action key and _bulk parameter
	// (Elasticsearch >= 8.13); OpenSearch and older Elasticsearch refuse
	// the whole request.
	requireDataStream bool
	// dynamicTemplates: the action key (Elasticsearch >= 7.13).
	dynamicTemplates bool
}

// bulkParam reports whether the server knows a _bulk query parameter
// (others are refused: "contains unrecognized parameter").
func (f features) bulkParam(k string) bool {
	switch k {
	case "pipeline", "routing", "refresh", "timeout", "wait_for_active_shards", "require_alias",
		"_source", "_source_includes", "_source_excludes", "filter_path", "pretty", "error_trace", "human":
		return true
	case "require_data_stream":
		return f.requireDataStream
	}
	return false
}

func (s *Server) features() features {
	s.mu.Lock()
	dist, ver := s.Distribution, s.Version
	s.mu.Unlock()
	if dist == "opensearch" {
		if ver == "" {
			ver = "2.19.0"
		}
		return features{root: `{"name":"estest","cluster_name":"estest","cluster_uuid":"estest-0000","version":{"distribution":"opensearch","number":"` + ver + `","build_type":"tar","lucene_version":"9.12.1","minimum_wire_compatibility_version":"7.10.0","minimum_index_compatibility_version":"7.0.0"},"tagline":"The OpenSearch Project: https://opensearch.org/"}`}
	}
	if ver == "" {
		ver = "8.19.0"
	}
	major, minor := versionOf(ver)
	at := func(ma, mi int) bool { return major > ma || major == ma && minor >= mi }
	return features{
		root:              `{"name":"estest","cluster_name":"estest","cluster_uuid":"estest-0000","version":{"number":"` + ver + `","build_flavor":"default","lucene_version":"9.12.0","minimum_wire_compatibility_version":"7.17.0","minimum_index_compatibility_version":"7.0.0"},"tagline":"You Know, for Search"}`,
		productHeader:     at(7, 14),
		requireDataStream: at(8, 13),
		dynamicTemplates:  at(7, 13),
	}
}

func versionOf(v string) (major, minor int) {
	parts := strings.SplitN(v, ".", 3)
	major, _ = strconv.Atoi(parts[0])
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(parts[1])
	}
	return major, minor
}

// indexTemplate is a stored composable index template.
type indexTemplate struct {
	Patterns   []string
	Priority   int
	DataStream bool
	Body       json.RawMessage
}

// Template returns a stored index template's body as it was put.
func (s *Server) Template(name string) (json.RawMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.templates[name]
	return t.Body, ok
}

// IsDataStream reports whether name is a data stream (created from a
// template with data_stream, or matching DataStreamPrefixes).
func (s *Server) IsDataStream(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isDataStream(name)
}

// RootRequests counts the requests to / (the clients' probes).
func (s *Server) RootRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nRoot
}

// admin serves _index_template/NAME (PUT, GET, HEAD, DELETE) and
// _data_stream/NAME (GET).
func (s *Server) admin(w http.ResponseWriter, r *http.Request, path string) {
	kind, name, _ := strings.Cut(path, "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	if kind == "_data_stream" {
		if r.Method != http.MethodGet || !s.dataStreams[name] {
			writeError(w, http.StatusNotFound, "index_not_found_exception", "no such index ["+name+"]")
			return
		}
		b, _ := json.Marshal(map[string]any{"data_streams": []any{map[string]any{"name": name, "timestamp_field": map[string]string{"name": "@timestamp"}}}})
		_, _ = w.Write(b)
		return
	}
	t, exists := s.templates[name]
	switch r.Method {
	case http.MethodHead, http.MethodGet:
		if !exists {
			w.WriteHeader(http.StatusNotFound)
			if r.Method == http.MethodGet {
				_, _ = io.WriteString(w, `{"error":{"root_cause":[{"type":"resource_not_found_exception","reason":"index template matching [`+name+`] not found"}],"type":"resource_not_found_exception","reason":"index template matching [`+name+`] not found"},"status":404}`)
			}
			return
		}
		if r.Method == http.MethodGet {
			b, _ := json.Marshal(map[string]any{"index_templates": []any{map[string]any{"name": name, "index_template": t.Body}}})
			_, _ = w.Write(b)
		}
	case http.MethodDelete:
		delete(s.templates, name)
		_, _ = io.WriteString(w, `{"acknowledged":true}`)
	case http.MethodPut, http.MethodPost:
		raw, err := io.ReadAll(r.Body)
		var body struct {
			IndexPatterns []string        `json:"index_patterns"`
			Priority      int             `json:"priority"`
			DataStream    json.RawMessage `json:"data_stream"`
		}
		if err == nil {
			err = json.Unmarshal(raw, &body)
		}
		if err != nil || len(body.IndexPatterns) == 0 {
			writeError(w, http.StatusBadRequest, "action_request_validation_exception", "Validation Failed: 1: index patterns are missing;")
			return
		}
		if r.URL.Query().Get("create") == "true" && exists {
			writeError(w, http.StatusBadRequest, "illegal_argument_exception", "index template ["+name+"] already exists")
			return
		}
		// Elasticsearch and OpenSearch refuse two templates of the same
		// priority whose patterns overlap.
		for other, ot := range s.templates {
			if other != name && ot.Priority == body.Priority && overlap(ot.Patterns, body.IndexPatterns) {
				writeError(w, http.StatusBadRequest, "illegal_argument_exception", "index template ["+name+"] has index patterns "+strings.Join(body.IndexPatterns, ",")+" matching patterns from existing templates ["+other+"] with the same priority ["+strconv.Itoa(body.Priority)+"]")
				return
			}
		}
		s.templates[name] = indexTemplate{Patterns: body.IndexPatterns, Priority: body.Priority,
			DataStream: len(body.DataStream) > 0 && string(body.DataStream) != "null", Body: raw}
		_, _ = io.WriteString(w, `{"acknowledged":true}`)
	default:
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Incorrect HTTP method")
	}
}

// autoCreate makes index a data stream when it does not exist yet and the
// highest-priority template matching it has data_stream (s.mu held).
func (s *Server) autoCreate(index string) {
	if _, ok := s.indices[index]; ok || s.dataStreams[index] {
		return
	}
	best, found := indexTemplate{}, false
	for _, t := range s.templates {
		for _, p := range t.Patterns {
			if wildcard(p, index) && (!found || t.Priority > best.Priority) {
				best, found = t, true
			}
		}
	}
	if found && best.DataStream {
		s.dataStreams[index] = true
	}
}

// overlap is a cheap test of whether two pattern lists may match one name
// (one pattern matching the other's text).
func overlap(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if wildcard(x, y) || wildcard(y, x) {
				return true
			}
		}
	}
	return false
}

// wildcard matches name against a pattern where '*' is any run of bytes.
func wildcard(pattern, name string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == name
	}
	if !strings.HasPrefix(name, pattern[:star]) {
		return false
	}
	rest := pattern[star+1:]
	name = name[star:]
	for i := 0; i <= len(name); i++ {
		if wildcard(rest, name[i:]) {
			return true
		}
	}
	return false
}
