// Package estest is an in-process Elasticsearch stand-in for tests: an
// httptest server on 127.0.0.1 that implements the documented behaviour of
// the _bulk API closely enough to test a client against it, and injects
// faults on demand.
//
// What it implements:
//   - GET / (and HEAD /) with a plausible cluster info body; every response
//     carries `X-Elastic-Product: Elasticsearch`, as Elasticsearch >= 7.14
//     does;
//   - POST|PUT /_bulk and /{index}/_bulk: gzip bodies (Content-Encoding),
//     strict NDJSON (an action line, then a source line for index/create; the
//     body must end with a newline; the action must be one JSON object with
//     one known op type; require_alias, require_data_stream and
//     dynamic_templates accepted as Elasticsearch 8 does), the ops index
//     (with or without _id; overwrite), create (409 version_conflict_engine_exception on an existing _id) and
//     delete; index name checks; ingest pipelines by name; data streams by
//     prefix (op_type create only, @timestamp required);
//   - authentication when Auth is set (401 otherwise);
//   - a maximum request size (413).
//
// Its answers are checked against real OpenSearch 2.19 and Elasticsearch 7.17
// nodes (testdata/real-*.json, real_test.go; docs/testing.md).
//
// Faults: ItemFault decides per item (429, a mapping error, ...), Fault per
// request (a status for the whole request, a delay, a dropped connection).
package estest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Item is one operation of a bulk request, as the server parsed it.
type Item struct {
	Op       string // index | create | delete
	Index    string
	ID       string // "" when the client gave none
	Pipeline string
	Routing  string // the routing key, "" when none
	Source   []byte // the source line (nil for delete)
	// Attempt counts how often an item with this index and _id reached the
	// server, this one included (1 the first time); 1 for items without _id.
	Attempt int
}

// ItemResult is an injected per-item outcome.
type ItemResult struct {
	Status int    // e.g. 429, 400, 403, 503
	Type   string // error.type, e.g. "mapper_parsing_exception"
	Reason string // error.reason
}

// RequestFault is an injected outcome for a whole request.
type RequestFault struct {
	// Delay waits this long before answering (or dropping), unless the
	// client goes away first.
	Delay time.Duration
	// Drop closes the connection without an answer and without indexing.
	Drop bool
	// DropAfterIndexing applies the request, then closes the connection
	// without an answer: the client cannot know its documents are in (a
	// timeout after the work was done), so a retry must not duplicate them.
	DropAfterIndexing bool
	// Status answers the whole request with this status (e.g. 429, 503)
	// and an Elasticsearch-style error body, without indexing anything.
	Status int
	// RetryAfter is sent as the Retry-After header with Status.
	RetryAfter string
	// Type and Reason are the error's type and reason with Status
	// (defaults: es_rejected_execution_exception for 429, else
	// estest_injected_exception; "injected fault").
	Type, Reason string
}

// Request is what the server saw of one HTTP request (for assertions).
type Request struct {
	Method, Path string
	Query        string
	Header       http.Header
	Body         []byte // decompressed
	RawBodyLen   int    // as sent (compressed size when gzip)
	Items        int
}

// Auth is the credentials the server requires (at most one method).
type Auth struct {
	Username, Password string
	APIKey             string // the encoded key, as sent after "ApiKey "
	BearerToken        string
}

// Server is the fake cluster. Configure the exported fields before sending
// requests; they are read under the server's lock.
type Server struct {
	*httptest.Server
	// URL is the base URL (http://127.0.0.1:port or https://...).
	URL string

	// ItemFault, when set, decides an item's fate before it is applied:
	// return nil to apply it normally.
	ItemFault func(it Item) *ItemResult
	// Fault, when set, decides a request's fate; n counts bulk requests
	// from 1. Return nil to answer normally.
	Fault func(n int, r *http.Request) *RequestFault
	// Auth, when set, is required on every request.
	Auth *Auth
	// MaxContentLength refuses larger bodies (as sent) with 413 (0: 100 MB,
	// Elasticsearch's http.max_content_length).
	MaxContentLength int
	// DataStreamPrefixes make indices with these prefixes data streams
	// (e.g. "logs-"): only op_type create, @timestamp required.
	DataStreamPrefixes []string
	// Pipelines lists the known ingest pipelines; others are refused.
	Pipelines []string
	// KeepRequests records every bulk request (see Requests).
	KeepRequests bool
	// Discard checks and answers requests but stores no documents (for
	// benchmarks); Count and Docs then see nothing.
	Discard bool
	// Distribution and Version make the server answer as that server does
	// (GET /, X-Elastic-Product, the action keys and _bulk parameters it
	// knows; see features): "elasticsearch" (default) or "opensearch", and
	// a version number (default 8.19.0 for Elasticsearch, 2.19.0 for
	// OpenSearch).
	Distribution, Version string
	// ILMPolicies are the lifecycle policies GET /_ilm/policy/NAME finds.
	ILMPolicies []string
	// Refuse, when set, may answer a request other than _bulk with an
	// error status (401, 403, 404, 500...) instead of serving it.
	Refuse func(method, path string) int

	templates   map[string]indexTemplate
	dataStreams map[string]bool
	nRoot       int

	mu       sync.Mutex
	indices  map[string]map[string]Doc
	seen     map[string]int // index+"\x00"+id → attempts
	autoID   int
	nBulk    int
	requests []Request
	items    int
	itemErrs map[int]int // status → count of refused items
}

// Doc is a stored document.
type Doc struct {
	Source   json.RawMessage
	Pipeline string
	Routing  string
	Version  int
}

// New starts a server on 127.0.0.1.
func New() *Server {
	s := NewUnstarted()
	s.Start()
	return s
}

// NewTLS starts a server with httptest's TLS certificate; use
// s.Server.Client() or s.Certificate() to trust it.
func NewTLS() *Server {
	s := NewUnstarted()
	s.StartTLS()
	return s
}

// NewUnstarted returns a server to configure (e.g. its TLS config) and then
// start with Start or StartTLS.
func NewUnstarted() *Server {
	s := &Server{indices: map[string]map[string]Doc{}, seen: map[string]int{}, itemErrs: map[int]int{},
		templates: map[string]indexTemplate{}, dataStreams: map[string]bool{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.handle))
	return s
}

// Start starts the server on plain HTTP.
func (s *Server) Start() { s.Server.Start(); s.URL = s.Server.URL }

// StartTLS starts the server on HTTPS.
func (s *Server) StartTLS() { s.Server.StartTLS(); s.URL = s.Server.URL }

// Count returns the number of documents in index.
func (s *Server) Count(index string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.indices[index])
}

// Total returns the number of documents in all indices.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.indices {
		n += len(m)
	}
	return n
}

// Get returns a document by index and _id.
func (s *Server) Get(index, id string) (Doc, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.indices[index][id]
	return d, ok
}

// Docs returns a copy of an index's documents by _id.
func (s *Server) Docs(index string) map[string]Doc {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Doc, len(s.indices[index]))
	for k, v := range s.indices[index] {
		out[k] = v
	}
	return out
}

// Indices returns the names of the indices that hold documents, sorted.
func (s *Server) Indices() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k, m := range s.indices {
		if len(m) > 0 {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Requests returns the recorded bulk requests (KeepRequests).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// BulkRequests returns how many bulk requests arrived (answered or not).
func (s *Server) BulkRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nBulk
}

// ItemsSeen returns how many bulk items were parsed (including refused
// ones); ItemErrors how many were refused, by status.
func (s *Server) ItemsSeen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items
}

// ItemErrors returns the number of refused items by status.
func (s *Server) ItemErrors() map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int]int{}
	for k, v := range s.itemErrs {
		out[k] = v
	}
	return out
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	feat := s.features()
	if feat.productHeader {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
	}
	w.Header().Set("Content-Type", "application/json")
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="security", charset="UTF-8"`)
		writeError(w, http.StatusUnauthorized, "security_exception", "missing authentication credentials for REST request ["+r.URL.Path+"]")
		return
	}
	path := strings.Trim(r.URL.Path, "/")
	isBulk := path == "_bulk" || strings.HasSuffix(path, "/_bulk") && strings.Count(path, "/") == 1
	if path == "" {
		s.mu.Lock()
		s.nRoot++
		s.mu.Unlock()
	}
	s.mu.Lock()
	refuse := s.Refuse
	s.mu.Unlock()
	if refuse != nil && !isBulk {
		if st := refuse(r.Method, r.URL.Path); st != 0 {
			typ := "security_exception"
			if st >= 500 {
				typ = "estest_injected_exception"
			}
			writeError(w, st, typ, "injected: "+r.Method+" "+r.URL.Path+" refused")
			return
		}
	}
	switch {
	case path == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, feat.root)
		}
	case strings.HasPrefix(path, "_ilm/policy/") && r.Method == http.MethodGet:
		s.mu.Lock()
		known := contains(s.ILMPolicies, strings.TrimPrefix(path, "_ilm/policy/"))
		s.mu.Unlock()
		if !known {
			writeError(w, http.StatusNotFound, "resource_not_found_exception", "Lifecycle policy not found: "+strings.TrimPrefix(path, "_ilm/policy/"))
			return
		}
		_, _ = io.WriteString(w, `{"`+strings.TrimPrefix(path, "_ilm/policy/")+`":{"version":1,"policy":{"phases":{}}}}`)
	case strings.HasPrefix(path, "_index_template/") || strings.HasPrefix(path, "_data_stream/"):
		s.admin(w, r, path)
	case isBulk:
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Incorrect HTTP method for uri [/"+path+"] and method ["+r.Method+"], allowed: [POST, PUT]")
			return
		}
		defIndex := strings.TrimSuffix(strings.TrimSuffix(path, "_bulk"), "/")
		s.bulk(w, r, defIndex)
	default:
		writeError(w, http.StatusNotFound, "index_not_found_exception", "no such index ["+path+"]")
	}
}

func (s *Server) authorized(r *http.Request) bool {
	s.mu.Lock()
	a := s.Auth
	s.mu.Unlock()
	if a == nil {
		return true
	}
	// Authentication schemes are case-insensitive (go-elasticsearch sends
	// "APIKey", the documentation writes "ApiKey").
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	switch {
	case a.Username != "":
		u, p, ok := r.BasicAuth()
		return ok && u == a.Username && p == a.Password
	case a.APIKey != "":
		return strings.EqualFold(scheme, "ApiKey") && cred == a.APIKey
	case a.BearerToken != "":
		return strings.EqualFold(scheme, "Bearer") && cred == a.BearerToken
	}
	return false
}

func writeError(w http.ResponseWriter, status int, typ, reason string) {
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{
		"error":  map[string]any{"root_cause": []any{map[string]string{"type": typ, "reason": reason}}, "type": typ, "reason": reason},
		"status": status,
	})
	_, _ = w.Write(b)
}

func (s *Server) bulk(w http.ResponseWriter, r *http.Request, defIndex string) {
	s.mu.Lock()
	s.nBulk++
	n := s.nBulk
	fault := s.Fault
	maxLen := s.MaxContentLength
	s.mu.Unlock()

	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client went away
	}
	var f *RequestFault
	if fault != nil {
		f = fault(n, r)
	}
	if f != nil && f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if f != nil && f.Drop {
		drop(w)
		return
	}
	if f != nil && f.Status != 0 {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		typ, reason := f.Type, f.Reason
		switch {
		case typ != "":
		case f.Status == http.StatusTooManyRequests:
			typ = "es_rejected_execution_exception"
		default:
			typ = "estest_injected_exception"
		}
		if reason == "" {
			reason = "injected fault"
		}
		writeError(w, f.Status, typ, reason)
		return
	}
	if maxLen <= 0 {
		maxLen = 100 * 1000 * 1000
	}
	if len(raw) > maxLen {
		w.WriteHeader(http.StatusRequestEntityTooLarge) // Elasticsearch answers 413 with an empty body
		return
	}
	ct := r.Header.Get("Content-Type")
	if !strings.Contains(ct, "json") {
		writeError(w, http.StatusNotAcceptable, "media_type_header_exception", "Content-Type header ["+ct+"] is not supported")
		return
	}
	body := raw
	switch ce := r.Header.Get("Content-Encoding"); ce {
	case "":
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "illegal_argument_exception", "invalid gzip body: "+err.Error())
			return
		}
	default:
		writeError(w, http.StatusBadRequest, "illegal_argument_exception", "unsupported Content-Encoding ["+ce+"]")
		return
	}
	feat := s.features()
	for k := range r.URL.Query() {
		if !feat.bulkParam(k) {
			writeError(w, http.StatusBadRequest, "illegal_argument_exception", "request ["+r.URL.Path+"] contains unrecognized parameter: ["+k+"]")
			return
		}
	}
	ops, perr := parseBulk(body, defIndex, r.URL.Query().Get("pipeline"), feat)
	if perr != "" {
		writeError(w, http.StatusBadRequest, "illegal_argument_exception", perr)
		return
	}

	s.mu.Lock()
	if s.KeepRequests {
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body, RawBodyLen: len(raw), Items: len(ops)})
	}
	itemFault := s.ItemFault
	s.mu.Unlock()

	var items bytes.Buffer
	anyErr := false
	for i, op := range ops {
		if i > 0 {
			items.WriteByte(',')
		}
		res := s.apply(op, itemFault)
		if res.Err != nil {
			anyErr = true
		}
		items.Write(res.appendJSON(items.AvailableBuffer(), op))
	}
	resp := fmt.Appendf(nil, `{"errors":%t,"took":1,"items":[`, anyErr)
	resp = append(append(resp, items.Bytes()...), "]}"...)
	if f != nil && f.DropAfterIndexing {
		drop(w)
		return
	}
	_, _ = w.Write(resp)
}

// drop closes the connection under the handler without an answer.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			_ = c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

type applied struct {
	Status  int
	Result  string
	ID      string
	Version int
	Err     *ItemResult
}

// appendJSON appends the item's entry of a _bulk answer, as Elasticsearch
// writes it.
func (a applied) appendJSON(b []byte, o op) []byte {
	b = append(b, `{"`...)
	b = append(b, o.Op...)
	b = append(b, `":{"_index":`...)
	b = appendString(b, o.Index)
	b = append(b, `,"_id":`...)
	if a.ID == "" {
		// No _id given and none generated: the item failed before the
		// coordinating node assigned one (a missing pipeline or index).
		b = append(b, "null"...)
	} else {
		b = appendString(b, a.ID)
	}
	if a.Err != nil {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(a.Status), 10)
		b = append(b, `,"error":{"type":`...)
		b = appendString(b, a.Err.Type)
		b = append(b, `,"reason":`...)
		b = appendString(b, a.Err.Reason)
		b = append(b, `,"index":`...)
		b = appendString(b, o.Index)
		return append(b, "}}}"...)
	}
	b = append(b, `,"_version":`...)
	b = strconv.AppendInt(b, int64(a.Version), 10)
	b = append(b, `,"result":`...)
	b = appendString(b, a.Result)
	b = append(b, `,"_shards":{"total":1,"successful":1,"failed":0},"status":`...)
	b = strconv.AppendInt(b, int64(a.Status), 10)
	return append(b, "}}"...)
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func (s *Server) apply(o op, fault func(Item) *ItemResult) applied {
	s.mu.Lock()
	s.items++
	key := o.Index + "\x00" + o.ID
	if o.ID != "" {
		s.seen[key]++
		o.Attempt = s.seen[key]
	} else {
		o.Attempt = 1
	}
	s.mu.Unlock()

	fail := func(r *ItemResult) applied {
		s.mu.Lock()
		s.itemErrs[r.Status]++
		s.mu.Unlock()
		return applied{Status: r.Status, ID: o.ID, Err: r}
	}
	if o.errType != "" {
		return fail(&ItemResult{Status: 400, Type: o.errType, Reason: o.errReason})
	}
	if o.requireAlias {
		s.mu.Lock()
		s.itemErrs[404]++
		s.mu.Unlock()
		return applied{Status: 404, ID: o.ID, Err: &ItemResult{Status: 404, Type: "index_not_found_exception",
			Reason: "no such index [" + o.Index + "] and [require_alias] request flag is [true] and [" + o.Index + "] is not an alias"}}
	}
	if fault != nil {
		if r := fault(o.Item); r != nil {
			if r.Type == "" {
				r.Type = "estest_injected_exception"
			}
			res := fail(r)
			if res.ID == "" && r.Type != "index_not_found_exception" {
				// Elasticsearch generates a missing _id before the item
				// reaches its shard, where most failures (429, mapping
				// errors, write blocks) happen.
				s.mu.Lock()
				s.autoID++
				res.ID = fmt.Sprintf("auto-%08d", s.autoID)
				s.mu.Unlock()
			}
			return res
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o.Pipeline != "" && o.Pipeline != "_none" && !contains(s.Pipelines, o.Pipeline) {
		s.itemErrs[400]++
		id := o.ID
		if id == "" {
			// What Elasticsearch 7.17 writes for an item without _id that
			// a missing pipeline refused (captured: testdata/real-*.json).
			id = "auto-generated"
		}
		return applied{Status: 400, ID: id, Err: &ItemResult{Status: 400, Type: "illegal_argument_exception", Reason: "pipeline with id [" + o.Pipeline + "] does not exist"}}
	}
	if o.Op != "delete" {
		s.autoCreate(o.Index)
	}
	if s.isDataStream(o.Index) {
		if o.Op == "index" {
			s.itemErrs[400]++
			return applied{Status: 400, ID: o.ID, Err: &ItemResult{Status: 400, Type: "illegal_argument_exception", Reason: "only write ops with an op_type of create are allowed in data streams"}}
		}
		if o.Op == "create" && !bytes.Contains(o.Source, []byte(`"@timestamp"`)) {
			s.itemErrs[400]++
			return applied{Status: 400, ID: o.ID, Err: &ItemResult{Status: 400, Type: "document_parsing_exception", Reason: "[1:1] failed to parse: data stream timestamp field [@timestamp] is missing"}}
		}
	}
	if s.Discard {
		return applied{Status: 201, Result: "created", ID: o.ID, Version: 1}
	}
	idx := s.indices[o.Index]
	if idx == nil {
		idx = map[string]Doc{}
		s.indices[o.Index] = idx
	}
	id := o.ID
	switch o.Op {
	case "delete":
		if _, ok := idx[id]; !ok {
			return applied{Status: 404, Result: "not_found", ID: id, Version: 1}
		}
		delete(idx, id)
		return applied{Status: 200, Result: "deleted", ID: id, Version: 1}
	case "create":
		if id != "" {
			if _, ok := idx[id]; ok {
				s.itemErrs[409]++
				return applied{Status: 409, ID: id, Err: &ItemResult{Status: 409, Type: "version_conflict_engine_exception", Reason: "[" + id + "]: version conflict, document already exists (current version [1])"}}
			}
		}
	}
	if id == "" {
		s.autoID++
		id = fmt.Sprintf("auto-%08d", s.autoID)
	}
	prev, exists := idx[id]
	d := Doc{Source: json.RawMessage(o.Source), Pipeline: o.Pipeline, Routing: o.Routing, Version: prev.Version + 1}
	idx[id] = d
	if exists {
		return applied{Status: 200, Result: "updated", ID: id, Version: d.Version}
	}
	return applied{Status: 201, Result: "created", ID: id, Version: d.Version}
}

func (s *Server) isDataStream(index string) bool {
	if s.dataStreams[index] {
		return true
	}
	for _, p := range s.DataStreamPrefixes {
		if strings.HasPrefix(index, p) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
