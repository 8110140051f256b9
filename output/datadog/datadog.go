// Package datadog is the `datadog` output: records go to Datadog's log intake
// (POST <site intake>/api/v2/logs) as the official client's
// LogsApi.SubmitLog sends them (intake.go): the same URL for each site or
// endpoint, the same headers, a body this package writes and gzips itself
// (body.go). The client itself (github.com/DataDog/datadog-api-client-go/v2)
// is the tests' reference, not a dependency of the agent: its small
// api/datadog package imports github.com/DataDog/zstd when cgo is on (the
// default wherever gcc is installed), whose 40 C files cost a cold build
// 45 s of serial gcc and about 50 CPU seconds (a third of the whole agent's
// compile) for a content encoding this output does not use; what the
// output used of it (server templates, the API key header, PrepareRequest,
// CallAPI with its retries off) is the dozen lines of intake.go. The tests
// check those lines against the client: TestSitesMatchClient (every site's
// URL), TestBodyMatchesClient (the body, byte for byte) and TestRequestIsTheClients.
//
// The output keeps every documented limit of the intake itself: at most
// 1000 entries and 5,000,000 bytes (uncompressed JSON) per request, at most
// 1,000,000 bytes per entry (longer records are truncated here, flagged with
// "truncated": true and counted, never rejected). A record older than the
// intake accepts (18 hours) goes where too_old says (the dead-letter file,
// re-dated, or dropped and counted); one too far in the future (2 hours) is
// re-dated.
//
// The files, by concern: config.go (keys and validation), encode.go (the
// buffered form of a record, message_key), frame.go (that form's layout),
// write.go (requests, answers, too_old), body.go (the JSON body and gzip),
// transport.go (proxy, TLS), truncate.go and jsonsize.go (the 1 MB limit).
// See README.md for the mapping and the handling of each answer.
package datadog

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	Requests       int64 // HTTP requests sent (every attempt)
	Delivered      int64 // entries accepted (2xx)
	DeliveredBytes int64 // uncompressed JSON bytes of accepted requests
	Truncated      int64 // records cut to fit 1,000,000 bytes (at Encode)
	RetimedOld     int64 // delivered entries older than MaxPast, sent with the current time (too_old: redate)
	RetimedFuture  int64 // delivered entries further than MaxFuture ahead, sent with the current time
	TooOldDead     int64 // entries older than MaxPast sent to the dead-letter file (too_old: dead_letter)
	TooOldDropped  int64 // entries older than MaxPast dropped (too_old: drop)
	// PossibleDuplicates counts the entries of requests whose outcome was
	// unknown (written and no answer, or a gateway's 502/504): retried, so
	// the intake may hold them twice.
	PossibleDuplicates int64
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
	client *http.Client
	tr     *http.Transport
	gzip   bool
	url    string // the intake's /api/v2/logs
	ua     string // User-Agent

	service, source, hostname field
	staticTags                string
	tagTmpls                  []*template.Template
	status                    *template.Template
	fieldKeys                 []string
	msgKey                    string // message_key ("": the record as JSON)

	now     func() time.Time
	scratch sync.Pool

	requests, delivered, deliveredBytes, truncated, retimedOld, retimedFuture    atomic.Int64
	tooOldDead, tooOldDropped                                                    atomic.Int64
	dups, splits, authErrors, throttled, serverErrors, transportErrors, rejected atomic.Int64

	mu      sync.Mutex
	state   string
	lastErr string
	// authUntil: after a 401/403, no request is sent before this time (the
	// records fail with authErr, blocked): a wrong key does not hammer the
	// intake while the delivery loop retries.
	authUntil time.Time
	authErr   error
}

var _ output.Output = (*Output)(nil)

// New builds the output from a validated config.
func New(c *Config, env plugins.OutputEnv) (*Output, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	o := &Output{cfg: *c, log: env.Logger, now: time.Now, state: StateStarting, msgKey: c.MessageKey}
	if o.log == nil {
		// The pipeline's env logger names the output already.
		o.log = slog.Default().With("output", env.Name)
	}
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

	if o.tr, err = newTransport(c); err != nil {
		return nil, err
	}
	if c.TLS != nil && c.TLS.InsecureSkipVerify {
		o.log.Warn("datadog: tls.insecure_skip_verify is on: the intake's certificate is not checked (for tests only)")
	}
	o.client = &http.Client{Transport: o.tr, Timeout: c.RequestTimeout}
	o.gzip = c.Compression == "gzip"
	o.url = intakeURL(c)
	o.ua = userAgent(env.Version)
	o.scratch.New = func() any { return new(scratch) }
	return o, nil
}

// DefaultHostname is the hostname sent when the config sets none:
// $NODE_NAME (a DaemonSet sets it from spec.nodeName: the name the Datadog
// Agent reports for the node, so logs and host metrics correlate), else
// $POD_NAME (a sidecar), else engineHost (the agent's host name as the
// engine knows it), else os.Hostname().
func DefaultHostname(engineHost string) string {
	for _, k := range []string{"NODE_NAME", "POD_NAME"} {
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
// partial record itself otherwise. With message_key every field is read
// (each becomes an attribute).
func (o *Output) Keys() (keys []string, all bool) { return o.fieldKeys, o.msgKey != "" }

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
		TooOldDead:         o.tooOldDead.Load(),
		TooOldDropped:      o.tooOldDropped.Load(),
		PossibleDuplicates: o.dups.Load(),
		Splits:             o.splits.Load(),
		AuthErrors:         o.authErrors.Load(),
		Throttled:          o.throttled.Load(),
		ServerErrors:       o.serverErrors.Load(),
		TransportErrors:    o.transportErrors.Load(),
		Rejected:           o.rejected.Load(),
	}
}

// Counts implements output.Counter: the counters the engine cannot see,
// for sidelog_output_events_total{output,kind} and /status.
func (o *Output) Counts() []output.Count {
	return []output.Count{
		{Name: "possible_duplicates", Value: o.dups.Load()},
		{Name: "too_old_redated", Value: o.retimedOld.Load()},
		{Name: "too_old_dead_lettered", Value: o.tooOldDead.Load()},
		{Name: "too_old_dropped", Value: o.tooOldDropped.Load(), Dropped: true},
		{Name: "future_redated", Value: o.retimedFuture.Load()},
		{Name: "truncated", Value: o.truncated.Load()},
		{Name: "auth_errors", Value: o.authErrors.Load()},
		{Name: "splits", Value: o.splits.Load()},
	}
}

var _ output.Counter = (*Output)(nil)

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
