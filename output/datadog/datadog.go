// Package datadog is the `datadog` output: records go to Datadog's log intake
// (POST <site intake>/api/v2/logs) through the official client,
// github.com/DataDog/datadog-api-client-go/v2: the small package api/datadog
// (configuration, servers, authentication, APIClient.PrepareRequest and
// CallAPI), called as LogsApi.SubmitLog calls them, with a body that this
// package writes and gzips itself (see post and body.go). The generated
// api/datadogV2 package (one package of about 8,500 files, several GB of
// memory to compile) is not imported: of it, SubmitLog only adds the
// operation name and the path, which are constants here.
//
// The output keeps every documented limit of the intake itself: at most
// 1000 entries and 5,000,000 bytes (uncompressed JSON) per request, at most
// 1,000,000 bytes per entry (longer records are truncated here, flagged with
// "truncated": true and counted, never rejected); records older than the
// intake accepts (18 hours) or too far in the future (2 hours) are sent with
// the current time and keep their own time in `original_timestamp`.
//
// See README.md for the mapping and the handling of each answer.
package datadog

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadog"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/template"
	"github.com/sidelog/sidelog/plugins"
)

// Limits of the intake (https://docs.datadoghq.com/api/latest/logs/#send-logs).
const (
	MaxEntries      = 1000      // entries per request
	MaxRequestBytes = 5_000_000 // uncompressed JSON per request
	MaxEntryBytes   = 1_000_000 // one entry's JSON
	// MaxPast and MaxFuture: the intake accepts (answering 202) but drops
	// events older than 18 hours or more than 2 hours ahead. The margins
	// leave room for clock skew between this host and the intake.
	MaxPast   = 18*time.Hour - 15*time.Minute
	MaxFuture = 2*time.Hour - 15*time.Minute
)

const operation = "v2.LogsApi.SubmitLog"

func init() {
	plugins.RegisterOutput("datadog", plugins.Output{
		Config: func() any { return DefaultConfig() },
		New: func(cfg any, env plugins.OutputEnv) (output.Output, error) {
			return New(cfg.(*Config), env)
		},
	})
}

// Stats are the output's counters since start.
type Stats struct {
	Requests           int64 // HTTP requests sent (every attempt)
	Delivered          int64 // entries accepted (2xx)
	DeliveredBytes     int64 // uncompressed JSON bytes of accepted requests
	Truncated          int64 // records cut to fit 1,000,000 bytes (at Encode)
	RetimedOld         int64 // delivered entries older than MaxPast, sent with the current time
	RetimedFuture      int64 // delivered entries further than MaxFuture ahead, sent with the current time
	PossibleDuplicates int64 // entries of requests whose outcome was unknown (sent, no answer), retried
	Splits             int64 // 413 answers that split a request in two
	AuthErrors         int64 // 401/403 answers
	Throttled          int64 // 408/429 answers
	ServerErrors       int64 // 5xx answers
	TransportErrors    int64 // requests without an answer
	Rejected           int64 // entries refused for good (400, 413 on one entry): dead-lettered
}

// Output states reported by Status.
const (
	StateStarting  = "starting"   // no request answered yet
	StateOK        = "ok"         // the last request was accepted
	StateAuthError = "auth_error" // 401/403: the API key is wrong or lacks permission
	StateThrottled = "throttled"  // 408/429
	StateError     = "error"      // 5xx, transport errors, unexpected answers
)

type field struct {
	t      *template.Template
	static string
}

func newField(src string) (field, error) {
	t, err := template.Compile(src)
	if err != nil {
		return field{}, err
	}
	if t.IsStatic() {
		return field{static: t.Literals()}, nil
	}
	return field{t: t}, nil
}

func (f field) append(dst []byte, e *event.Event) []byte {
	if f.t == nil {
		return append(dst, f.static...)
	}
	return f.t.Append(dst, e)
}

// Output is the datadog output.
type Output struct {
	cfg    Config
	log    *slog.Logger
	client *datadog.APIClient
	tr     *http.Transport
	gzip   bool
	keys   map[string]datadog.APIKey
	srvIdx map[string]int
	srvVar map[string]map[string]string

	service, source, hostname field
	staticTags                string
	tagTmpls                  []*template.Template
	status                    *template.Template
	fieldKeys                 []string

	now     func() time.Time
	scratch sync.Pool

	requests, delivered, deliveredBytes, truncated, retimedOld, retimedFuture    atomic.Int64
	dups, splits, authErrors, throttled, serverErrors, transportErrors, rejected atomic.Int64

	mu      sync.Mutex
	state   string
	lastErr string
}

var _ output.Output = (*Output)(nil)

// New builds the output from a validated config.
func New(c *Config, env plugins.OutputEnv) (*Output, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	o := &Output{cfg: *c, log: env.Logger, now: time.Now, state: StateStarting}
	if o.log == nil {
		o.log = slog.Default()
	}
	o.log = o.log.With("output", env.Name)
	var err error
	if o.service, err = newField(c.Service); err != nil {
		return nil, err
	}
	if o.source, err = newField(c.Source); err != nil {
		return nil, err
	}
	if c.Hostname != "" {
		if o.hostname, err = newField(c.Hostname); err != nil {
			return nil, err
		}
	} else {
		o.hostname = field{static: DefaultHostname(env.Hostname)}
	}
	keys := map[string]bool{}
	for _, f := range []field{o.service, o.source, o.hostname} {
		if f.t != nil {
			for _, k := range f.t.Keys() {
				keys[k] = true
			}
		}
	}
	var static []string
	for _, src := range c.Tags {
		t, err := template.Compile(src)
		if err != nil {
			return nil, err
		}
		if t.IsStatic() {
			static = append(static, t.Literals())
			continue
		}
		o.tagTmpls = append(o.tagTmpls, t)
		for _, k := range t.Keys() {
			keys[k] = true
		}
	}
	o.staticTags = strings.Join(static, ",")
	if o.status, err = template.Compile("{{ " + c.StatusKey + " }}"); err != nil {
		return nil, &plugins.KeyError{Key: "status_key", Err: err}
	}
	for _, k := range o.status.Keys() {
		keys[k] = true
	}
	for k := range keys {
		o.fieldKeys = append(o.fieldKeys, k)
	}
	slices.Sort(o.fieldKeys)

	o.tr = http.DefaultTransport.(*http.Transport).Clone() // proxy from HTTPS_PROXY/HTTP_PROXY/NO_PROXY
	o.tr.Proxy = http.ProxyFromEnvironment
	o.tr.MaxIdleConnsPerHost = max(4, 2*c.MaxInFlight)
	o.tr.IdleConnTimeout = 30 * time.Second // below the usual 60s of load balancers
	cfg := datadog.NewConfiguration()
	cfg.HTTPClient = &http.Client{Transport: o.tr, Timeout: c.RequestTimeout}
	cfg.RetryConfiguration.EnableRetry = false // the delivery loop retries
	cfg.UserAgent = "sidelog " + cfg.UserAgent
	o.client = datadog.NewAPIClient(cfg)
	o.gzip = c.Compression == "gzip"
	o.keys = map[string]datadog.APIKey{"apiKeyAuth": {Key: c.APIKey}}
	if c.Endpoint != "" {
		proto, name, _ := parseEndpoint(c.Endpoint)
		o.srvIdx = map[string]int{operation: 1} // "{protocol}://{name}"
		o.srvVar = map[string]map[string]string{operation: {"protocol": proto, "name": name}}
	} else {
		o.srvIdx = map[string]int{operation: 0} // "https://{subdomain}.{site}"
		o.srvVar = map[string]map[string]string{operation: {"site": c.Site}}
	}
	o.scratch.New = func() any { return new(scratch) }
	return o, nil
}

// DefaultHostname is the hostname sent when the config sets none: $POD_NAME
// (a sidecar), else $NODE_NAME (a DaemonSet), else engineHost (the agent's
// host name as the engine knows it), else os.Hostname().
func DefaultHostname(engineHost string) string {
	for _, k := range []string{"POD_NAME", "NODE_NAME"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	if engineHost != "" {
		return engineHost
	}
	h, _ := os.Hostname()
	return h
}

// InFlight is max_in_flight: the engine's delivery loop keeps that many
// batches in flight for this output (Write is safe for concurrent use).
func (o *Output) InFlight() int { return o.cfg.MaxInFlight }

// DefaultBuffer makes the engine give this output a disk buffer by default.
func (o *Output) DefaultBuffer() string { return "disk" }

// Keys implements plugins.KeyUser: the top-level record fields that the
// templates of service, source, hostname, tags and the status key read, so
// that the parser may parse only those. The message needs no field: it is
// the raw line when the record is unchanged JSON, and AppendJSON completes a
// partial record itself otherwise.
func (o *Output) Keys() (keys []string, all bool) { return o.fieldKeys, false }

var _ plugins.KeyUser = (*Output)(nil)

// Status reports the output's state (StateOK, StateAuthError, ...) and the
// last error, for /status and metrics. The API key never appears in it.
func (o *Output) Status() (state, lastError string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.state, o.lastErr
}

// Stats returns the counters.
func (o *Output) Stats() Stats {
	return Stats{
		Requests:           o.requests.Load(),
		Delivered:          o.delivered.Load(),
		DeliveredBytes:     o.deliveredBytes.Load(),
		Truncated:          o.truncated.Load(),
		RetimedOld:         o.retimedOld.Load(),
		RetimedFuture:      o.retimedFuture.Load(),
		PossibleDuplicates: o.dups.Load(),
		Splits:             o.splits.Load(),
		AuthErrors:         o.authErrors.Load(),
		Throttled:          o.throttled.Load(),
		ServerErrors:       o.serverErrors.Load(),
		TransportErrors:    o.transportErrors.Load(),
		Rejected:           o.rejected.Load(),
	}
}

func (o *Output) setState(state, msg string) (changed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	changed = o.state != state
	o.state, o.lastErr = state, msg
	return changed
}

// redact removes the API key from s: answers and transport errors are
// logged and shown in /status.
func (o *Output) redact(s string) string {
	if o.cfg.APIKey == "" {
		return s
	}
	return strings.ReplaceAll(s, o.cfg.APIKey, "[REDACTED]")
}

// Close releases idle connections.
func (o *Output) Close(ctx context.Context) error {
	o.tr.CloseIdleConnections()
	return nil
}

// ---- Encode ----

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

// Encode writes the buffered form of e (see frame.go): the attributes
// rendered now, the event time, and the record as JSON, which is sent as
// the entry's `message` (the intake parses a JSON message into attributes,
// as it does for the Datadog Agent's JSON logs). A record whose entry would
// exceed MaxEntryBytes is truncated here and flagged.
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
	dst = append(dst, frameV1, flags)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(ns))
	dst = append(dst, 0, 0, 0, 0) // message JSON length, patched below
	overhead := 2 + 8 /* commas */ + kMessage + kTimestamp + maxTimestampLen + kOriginal + originalLen + kTruncated + 4
	// service, source, hostname, tags, status
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
			dst = o.hostname.append(dst, e)
			overhead += kHost
		case 3:
			dst = o.appendTags(dst, e)
			overhead += kTags
		case 4:
			dst = appendStatus(o.status.Append(dst, e), at+4)
			overhead += kStatus
		}
		binary.LittleEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
		overhead += jsonLen(dst[at+4:])
	}
	msgAt := len(dst)
	dst = event.AppendJSON(dst, e)
	budget := MaxEntryBytes - overhead
	n := jsonLen(dst[msgAt:])
	if n > budget {
		dst, n = truncateRecord(dst, msgAt, e, budget)
		dst[start+1] |= flagTruncated
		o.truncated.Add(1)
	}
	binary.LittleEndian.PutUint32(dst[start+10:], uint32(n))
	return dst, nil
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

// ---- Write ----

type scratch struct {
	ents  []entry
	body  []byte // the request body (compressed when gzip is on)
	chunk []byte // uncompressed part of the body not yet compressed
	z     bytes.Buffer
}

// Write sends the batch in requests of at most MaxEntries entries and
// MaxRequestBytes bytes. Each request's records share its outcome; the
// result is nil when all were accepted, else a *output.BatchError with the
// classified error of each failed record.
func (o *Output) Write(ctx context.Context, batch [][]byte) error {
	s := o.scratch.Get().(*scratch)
	defer func() {
		clear(s.ents) // drop the strings that alias batch
		o.scratch.Put(s)
	}()
	failed := map[int]error{}
	s.ents = s.ents[:0]
	now := o.now()
	nowMs := now.UnixMilli()
	for i, rec := range batch {
		var ent entry
		if err := decodeFrame(rec, &ent); err != nil {
			failed[i] = output.PermanentError(err)
			continue
		}
		ent.idx = i
		o.stamp(&ent, now, nowMs)
		s.ents = append(s.ents, ent)
	}
	// Group into requests and send them in order. After an error that says
	// "not now" (throttled, auth, server, transport), the rest of the batch
	// is not sent and fails with the same error.
	var stop error
	for from := 0; from < len(s.ents); {
		to, size := from, 3 // [ ] and the encoder's newline
		for to < len(s.ents) && to-from < MaxEntries {
			add := s.ents[to].size
			if to > from {
				add++ // comma
			}
			if size+add > MaxRequestBytes {
				break
			}
			size += add
			to++
		}
		group := s.ents[from:to]
		if stop != nil {
			for _, ent := range group {
				failed[ent.idx] = stop
			}
		} else {
			stop = o.send(ctx, s, group, failed)
		}
		from = to
	}
	if len(failed) == 0 {
		return nil
	}
	return &output.BatchError{Failed: failed}
}

// stamp decides the timestamp sent and computes the entry's JSON size.
func (o *Output) stamp(ent *entry, now time.Time, nowMs int64) {
	ent.timestamp, ent.original, ent.retimed = nowMs, false, 0
	if ent.unixNano != 0 {
		t := time.Unix(0, ent.unixNano)
		switch {
		case now.Sub(t) > MaxPast:
			ent.original, ent.retimed = true, -1
		case t.Sub(now) > MaxFuture:
			ent.original, ent.retimed = true, +1
		default:
			ent.timestamp = t.UnixMilli()
		}
	}
	n := 2 + kMessage + ent.msgJSON + kTimestamp + intLen(ent.timestamp)
	fields := 2
	for _, f := range [...]struct {
		v string
		k int
	}{{ent.service, kService}, {ent.source, kSource}, {ent.hostname, kHost}, {ent.tags, kTags}, {ent.status, kStatus}} {
		if f.v != "" {
			n += f.k + jsonLen(f.v)
			fields++
		}
	}
	if ent.original {
		n += kOriginal + originalLen
		fields++
	}
	if ent.flags&flagTruncated != 0 {
		n += kTruncated + len("true")
		fields++
	}
	ent.size = n + fields - 1
}

const originalLayout = "2006-01-02T15:04:05.000Z07:00"

// send posts one request and records the failure of its entries in failed.
// It returns non-nil when the rest of the batch should not be sent now.
func (o *Output) send(ctx context.Context, s *scratch, ents []entry, failed map[int]error) error {
	body, _ := s.makeBody(ents, o.gzip)
	var wrote atomic.Bool
	rctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
	})
	resp, answer, err := o.post(rctx, body)
	o.requests.Add(1)
	fail := func(e error) {
		for _, ent := range ents {
			failed[ent.idx] = e
		}
	}
	if resp != nil && resp.StatusCode/100 == 2 {
		size := 3
		for i, ent := range ents {
			size += ent.size
			if i > 0 {
				size++
			}
			switch ent.retimed {
			case -1:
				o.retimedOld.Add(1)
			case +1:
				o.retimedFuture.Add(1)
			}
		}
		o.delivered.Add(int64(len(ents)))
		o.deliveredBytes.Add(int64(size))
		if o.setState(StateOK, "") {
			o.log.Info("datadog intake accepts records")
		}
		return nil
	}
	if resp == nil {
		o.transportErrors.Add(1)
		msg := "request failed"
		if wrote.Load() {
			// The intake may have taken the request: it is retried and its
			// entries may arrive twice.
			o.dups.Add(int64(len(ents)))
			msg = "no answer to a sent request (outcome unknown, retried: possible duplicates)"
		}
		e := fmt.Errorf("datadog: %s: %s", msg, o.redact(errString(err)))
		fail(e)
		if ctx.Err() == nil {
			o.setState(StateError, e.Error())
		}
		return e
	}
	code := resp.StatusCode
	reason := o.reason(resp, answer)
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		o.authErrors.Add(1)
		e := output.ThrottledError(fmt.Errorf("datadog: API key refused: %s", reason), o.cfg.AuthErrorBackoff)
		if o.setState(StateAuthError, e.Error()) {
			o.log.Error("datadog refused the API key; retrying", "answer", reason, "retry_in", o.cfg.AuthErrorBackoff.String())
		}
		fail(e)
		return e
	case code == http.StatusRequestEntityTooLarge && len(ents) > 1:
		o.splits.Add(1)
		h := len(ents) / 2
		if stop := o.send(ctx, s, ents[:h], failed); stop != nil {
			for _, ent := range ents[h:] {
				failed[ent.idx] = stop
			}
			return stop
		}
		return o.send(ctx, s, ents[h:], failed)
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge:
		o.rejected.Add(int64(len(ents)))
		e := output.PermanentError(fmt.Errorf("datadog: intake refused %d entries: %s", len(ents), reason))
		o.log.Warn("datadog refused records; they go to the dead-letter file", "entries", len(ents), "answer", reason)
		fail(e)
		return nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		after := retryAfter(resp.Header.Get("Retry-After"), o.now())
		var e error = fmt.Errorf("datadog: %s", reason)
		state := StateError
		if code >= 500 {
			o.serverErrors.Add(1)
		} else {
			o.throttled.Add(1)
			state = StateThrottled
		}
		if code < 500 || after > 0 {
			e = output.ThrottledError(e, after)
		}
		o.setState(state, e.Error())
		fail(e)
		return e
	default:
		// Other answers (404 from a wrong endpoint, 3xx, ...) are retried:
		// a configuration problem must not send every record to the
		// dead-letter file. Status shows it.
		e := fmt.Errorf("datadog: unexpected answer: %s", reason)
		if o.setState(StateError, e.Error()) {
			o.log.Error("datadog: unexpected answer; retrying", "answer", reason)
		}
		fail(e)
		return e
	}
}

// post sends one request body (already gzip-compressed when o.gzip) to the
// intake through the official client, as LogsApi.SubmitLog does: the
// client's server selection for the operation (site, or the endpoint
// override given as operation server variables), its authentication
// (DD-API-KEY from the context), its request preparation (default headers,
// User-Agent, Content-Length) and its CallAPI (retries off). Only the
// serialisation of the items and the compression are sidelog's: SubmitLog
// takes a []HTTPLogItem that it re-marshals by reflection and would
// compress a second time if Content-Encoding were passed to
// PrepareRequest, so the header is set on the prepared request. It returns
// the answer and its body (read and closed), or the transport error.
func (o *Output) post(ctx context.Context, body []byte) (*http.Response, []byte, error) {
	ctx = context.WithValue(ctx, datadog.ContextAPIKeys, o.keys)
	ctx = context.WithValue(ctx, datadog.ContextOperationServerIndices, o.srvIdx)
	ctx = context.WithValue(ctx, datadog.ContextOperationServerVariables, o.srvVar)
	client := o.client
	base, err := client.Cfg.ServerURLWithContext(ctx, operation)
	if err != nil {
		return nil, nil, err
	}
	hdr := map[string]string{"Content-Type": "application/json", "Accept": "application/json"}
	datadog.SetAuthKeys(ctx, &hdr, [2]string{"apiKeyAuth", "DD-API-KEY"})
	req, err := client.PrepareRequest(ctx, base+"/api/v2/logs", http.MethodPost, body, hdr, url.Values{}, url.Values{}, nil)
	if err != nil {
		return nil, nil, err
	}
	if o.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := client.CallAPI(req)
	if err != nil || resp == nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, nil, err
	}
	answer, err := datadog.ReadBody(resp)
	if err != nil {
		// The status arrived: the answer is known even if its body is not.
		answer = nil
	}
	return resp, answer, nil
}

func errString(err error) string {
	if err == nil {
		return "no response"
	}
	return err.Error()
}

// reason describes an answer: status line and the start of its body, with
// the API key redacted before anything is cut.
func (o *Output) reason(resp *http.Response, body []byte) string {
	b := strings.TrimSpace(o.redact(string(body[:min(len(body), 4096)])))
	if len(b) > 300 {
		b = strings.ToValidUTF8(b[:300], "") + "..."
	}
	r := resp.Status
	if b != "" {
		r += ": " + b
	}
	return r
}

// retryAfter parses Retry-After (seconds or an HTTP date).
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, 3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, time.Hour)
		}
	}
	return 0
}
