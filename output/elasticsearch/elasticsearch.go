// Package elasticsearch is the `elasticsearch` output: it sends records to
// the _bulk API of an Elasticsearch cluster, as plain indices (mode: bulk,
// op_type index) or data streams (mode: data_stream, op_type create).
//
// Exactly once: with id: source every record carries a stable _id derived
// from the agent's identity and the line's source position, and its index
// is rendered from the event time when the record is encoded, so a retried
// or replayed record overwrites (index) or is refused with 409 (create) the
// document it already produced; 409 counts as delivered.
//
// One bad document never blocks a batch: per-item results are classified,
// 2xx and 409 delivered, 429 and 5xx retried alone, other 4xx dead-lettered
// with Elasticsearch's reason (see Write).
package elasticsearch

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elastic/elastic-transport-go/v8/elastictransport"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/sourceid"
	"github.com/sidelog/sidelog/output/template"
	"github.com/sidelog/sidelog/plugins"
)

func init() {
	plugins.RegisterOutput("elasticsearch", plugins.Output{
		Config: func() any { return NewConfig() },
		New: func(cfg any, env plugins.OutputEnv) (output.Output, error) {
			return New(cfg.(*Config), env)
		},
	})
}

// Output is the elasticsearch output. It is safe for concurrent use.
type Output struct {
	name         string
	cfg          Config
	logger       *slog.Logger
	index        *template.Template
	idKey        *template.Template // id_key as a template, nil when unset
	routing      *template.Template // nil when unset
	stableID     bool
	idPrefix     sourceid.Prefix
	actionPrefix []byte
	actionSuffix []byte
	keys         []string
	ecs          *ecsLayout // ecs: true

	client    *elastictransport.Client
	transport *http.Transport
	gzip      bool
	maxBytes  int
	sem       chan struct{}
	secrets   []string

	bufs  sync.Pool // *[]byte request bodies
	gzips sync.Pool // *gzip.Writer

	// kind is the output's type (elasticsearch, opensearch), for messages;
	// expect the distribution that type expects ("": either).
	kind, expect string
	// info is the start-up probe's result (nil until it succeeded);
	// probeMu lets one Write probe at a time.
	info    atomic.Pointer[serverInfo]
	probeMu chan struct{}
}

var (
	_ output.Output          = (*Output)(nil)
	_ output.DefaultBufferer = (*Output)(nil)
)

// New builds the output from a validated config (type elasticsearch: it
// works with Elasticsearch and OpenSearch alike).
func New(cfg *Config, env plugins.OutputEnv) (*Output, error) {
	return NewFor(cfg, env, "")
}

// NewFor builds the output for the distribution expect (Elasticsearch,
// OpenSearch, or "" for either): the start-up probe warns when the server
// is another one. Messages name the output's type after it.
func NewFor(cfg *Config, env plugins.OutputEnv, expect string) (*Output, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := env.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tpl, err := template.Compile(cfg.indexTemplate())
	if err != nil {
		return nil, &plugins.KeyError{Key: "index", Err: err}
	}
	o := &Output{
		name:     env.Name,
		cfg:      *cfg,
		logger:   logger,
		index:    tpl,
		stableID: cfg.ID == "source",
		idPrefix: sourceid.NewPrefix(env.InstanceID, env.Hostname),
		gzip:     cfg.Compression == "gzip",
		maxBytes: int(cfg.MaxRequestBytes),
		sem:      make(chan struct{}, cfg.MaxInFlight),
		kind:     "elasticsearch",
		expect:   expect,
		probeMu:  make(chan struct{}, 1),
	}
	if expect == OpenSearch {
		o.kind = "opensearch"
	}
	if cfg.ECS {
		o.ecs = newECSLayout(env.InstanceID, env.Hostname, env.Version, cfg.Mode == "data_stream")
	}
	if o.stableID && env.InstanceID == "" {
		logger.Warn("elasticsearch: no instance id: document ids from two agents on hosts with the same name may collide")
	}
	op := "index"
	if cfg.Mode == "data_stream" {
		op = "create"
	}
	o.actionPrefix = []byte(`{"` + op + `":{"_index":"`)
	suffix := []byte{}
	if cfg.Pipeline != "" {
		suffix = append(suffix, `,"pipeline":`...)
		suffix = event.AppendString(suffix, cfg.Pipeline)
	}
	o.actionSuffix = append(suffix, "}}\n"...)
	o.keys = append(append([]string{}, tpl.Keys()...), "@timestamp")
	if cfg.IDKey != "" {
		if o.idKey, err = template.Compile("{{ " + cfg.IDKey + " }}"); err != nil {
			return nil, &plugins.KeyError{Key: "id_key", Err: err}
		}
		o.keys = append(o.keys, o.idKey.Keys()...)
	}
	if cfg.Routing != "" {
		if o.routing, err = template.Compile(cfg.Routing); err != nil {
			return nil, &plugins.KeyError{Key: "routing", Err: err}
		}
		o.keys = append(o.keys, o.routing.Keys()...)
	}

	endpoints := cfg.endpoints()
	if cfg.TLS != nil && !strings.HasPrefix(strings.Join(endpoints, " "), "https://") && !strings.Contains(strings.Join(endpoints, " "), " https://") {
		logger.Warn("elasticsearch: tls is set but no endpoint uses https: requests are not encrypted")
	}
	if cfg.Mode == "bulk" && looksLikeDataStream(cfg.indexTemplate()) {
		logger.Warn("elasticsearch: mode bulk with an index named like a data stream (type-dataset-namespace); a cluster's data-stream template (logs-*-*) will refuse op_type index: use mode: data_stream", "index", cfg.indexTemplate())
	}

	for _, s := range []string{cfg.Password, cfg.APIKey, cfg.BearerToken} {
		if s != "" {
			o.secrets = append(o.secrets, s)
		}
	}

	var tlsCfg *tls.Config
	if cfg.TLS != nil {
		if tlsCfg, err = cfg.TLS.build(); err != nil {
			return nil, err
		}
	}
	o.transport = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConnsPerHost:   cfg.MaxInFlight * 2,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	// The transport of the official client (elastic-transport-go), not the
	// root go-elasticsearch package: that one pulls in the generated typed
	// API (858 packages) and refuses any 2xx answer without
	// X-Elastic-Product after the bulk request was applied, which turns an
	// OpenSearch or pre-7.14 server into an endless resend loop.
	urls := make([]*url.URL, 0, len(endpoints))
	for _, e := range endpoints {
		u, err := url.Parse(strings.TrimRight(e, "/"))
		if err != nil {
			return nil, fmt.Errorf("elasticsearch: endpoint: %s", o.redact(err.Error()))
		}
		urls = append(urls, u)
	}
	rt, err := cfg.signingTransport(o.transport) // auth.aws: SigV4 (aws.go)
	if err != nil {
		return nil, err
	}
	opts := []elastictransport.Option{
		elastictransport.WithUserAgent(userAgent),
		elastictransport.WithURLs(urls...),
		elastictransport.WithTransport(rt),
	}
	switch {
	case cfg.APIKey != "":
		opts = append(opts, elastictransport.WithAPIKey(cfg.APIKey))
	case cfg.BearerToken != "":
		opts = append(opts, elastictransport.WithServiceToken(cfg.BearerToken))
	case cfg.Username != "" || cfg.Password != "":
		opts = append(opts, elastictransport.WithBasicAuth(cfg.Username, cfg.Password))
	}
	if len(endpoints) > 1 {
		// With several endpoints, a connection error or a 502/503/504 moves
		// the request to the next node at once (failover); the delivery
		// loop's backoff handles the rest.
		opts = append(opts, elastictransport.WithRetry(len(endpoints)-1, 502, 503, 504))
	} else {
		opts = append(opts, elastictransport.WithDisableRetry())
	}
	client, err := elastictransport.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: %s", o.redact(err.Error()))
	}
	o.client = client
	return o, nil
}

// userAgent names the agent to the cluster (its logs, slow log, audit).
const userAgent = "sidelog"

var dataStreamName = regexp.MustCompile(`^(logs|metrics|traces|synthetics|profiling)-[^-]+-[^-]+$`)

func looksLikeDataStream(index string) bool { return dataStreamName.MatchString(index) }

// DefaultBuffer implements output.DefaultBufferer: a network output buffers
// on disk by default.
func (o *Output) DefaultBuffer() string { return "disk" }

// Keys returns the top-level record fields that Encode reads (the index
// template's fields and @timestamp), so that a pipeline parsing records
// partially provides them.
func (o *Output) Keys() []string { return o.keys }

// Close releases idle connections. In-flight Writes must have returned.
func (o *Output) Close(ctx context.Context) error {
	o.transport.CloseIdleConnections()
	return nil
}

// redact removes secrets from a message (defence in depth: endpoints are
// validated to hold no credentials).
func (o *Output) redact(s string) string {
	for _, sec := range o.secrets {
		s = strings.ReplaceAll(s, sec, "[REDACTED]")
	}
	return s
}

// InFlight is max_in_flight: the engine's delivery loop keeps that many
// batches in flight for this output.
func (o *Output) InFlight() int { return cap(o.sem) }
