package elasticsearch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/sidelog/sidelog/delivery"
)

// The start-up probe.
//
// Before its first bulk request the output asks the server what it is
// (GET /, once; never in `validate`, which contacts nothing). Distribution
// and version decide what a request may hold: require_data_stream only for
// Elasticsearch >= 8.13 (OpenSearch and Elasticsearch 7 refuse the whole
// request for a parameter they do not know), composable index templates
// (setup) only from Elasticsearch 7.8 and OpenSearch 1.0.
//
//   - An answer that is not Elasticsearch >= 7 or OpenSearch >= 1 (an old
//     server, another product, a proxy's page) is refused with a clear
//     error: no bulk request is sent, the output shows failing, and the
//     probe is asked again at each retry.
//   - 403 or 404 on GET / (a least-privilege user without
//     cluster:monitor/main; a proxy that serves only _bulk; OpenSearch
//     Serverless): a warning, and conservative defaults (no optional
//     request parameters).
//   - No answer (connection refused, timeout, 5xx) or 401: the output is
//     blocked (delivery.Blocked: /status, the gauge, nothing dead-lettered)
//     and the probe is retried with the delivery loop's backoff.

// Distributions the probe tells apart.
const (
	Elasticsearch = "elasticsearch"
	OpenSearch    = "opensearch"
)

// serverInfo is what the probe learnt.
type serverInfo struct {
	distribution string // Elasticsearch, OpenSearch, or "" (unknown: conservative)
	version      string // as the server wrote it
	major, minor int
	// requireDataStream: the _bulk parameter exists (Elasticsearch >= 8.13).
	requireDataStream bool
	// composableTemplates: _index_template exists (ES >= 7.8, OpenSearch).
	composableTemplates bool
}

func (s *serverInfo) String() string {
	if s.distribution == "" {
		return "an unidentified server"
	}
	return s.distribution + " " + s.version
}

// errUnsupported marks a server the output refuses to send to.
var errUnsupported = errors.New("unsupported server")

// ready returns the server's info, probing it first if no probe succeeded
// yet (one probe at a time; concurrent Writes wait for it).
func (o *Output) ready(ctx context.Context) (*serverInfo, error) {
	if s := o.info.Load(); s != nil {
		return s, nil
	}
	select {
	case o.probeMu <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-o.probeMu }()
	if s := o.info.Load(); s != nil {
		return s, nil
	}
	s, err := o.probeManaged(ctx) // o.probe, degraded for OpenSearch Serverless (aws.go)
	if err != nil {
		return nil, err
	}
	if err := o.setupTemplates(ctx, s); err != nil {
		return nil, err
	}
	o.info.Store(s)
	return s, nil
}

// probe sends GET / and interprets the answer.
func (o *Output) probe(ctx context.Context) (*serverInfo, error) {
	rctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "/", nil)
	if err != nil {
		return nil, err
	}
	resp, err := o.client.Perform(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		msg := o.redact(err.Error())
		if rctx.Err() != nil {
			msg = "no answer within " + o.cfg.Timeout.String()
		}
		return nil, delivery.Blocked(transportReason(err), fmt.Errorf("%s: start-up probe (GET /): %s; retrying", o.kind, msg))
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if rerr != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, delivery.Blocked("server_unreachable", fmt.Errorf("%s: start-up probe (GET /): reading the answer: %s; retrying", o.kind, o.redact(rerr.Error())))
	}
	switch st := resp.StatusCode; {
	case st == http.StatusForbidden || st == http.StatusNotFound:
		s := &serverInfo{}
		o.logger.Warn(o.kind+": the start-up probe (GET /) was refused: going on without knowing the server's version (no optional request parameters; setup assumes composable templates). Grant cluster:monitor/main to identify it.",
			"status", st, "answer", o.redact(reasonOf(body)))
		return s, nil
	case st == http.StatusUnauthorized:
		return nil, delivery.Blocked("security_exception", fmt.Errorf("%s: start-up probe (GET /): HTTP 401%s: check the credentials", o.kind, o.redact(reasonOf(body))))
	case st >= 500 || st == http.StatusTooManyRequests || st == http.StatusRequestTimeout:
		return nil, delivery.Blocked("server_unreachable", fmt.Errorf("%s: start-up probe (GET /): HTTP %d%s; retrying", o.kind, st, o.redact(reasonOf(body))))
	case st < 200 || st > 299:
		return nil, fmt.Errorf("%s: start-up probe (GET /): HTTP %d%s: %w: not an Elasticsearch or OpenSearch node (check endpoints)", o.kind, st, o.redact(reasonOf(body)), errUnsupported)
	}
	s, err := parseRoot(body)
	if err != nil {
		return nil, fmt.Errorf("%s: start-up probe (GET /): %w; nothing is sent to it", o.kind, err)
	}
	if o.expect != "" && s.distribution != o.expect {
		o.logger.Warn(o.kind + ": the server is " + s.String() + ", not " + o.expect + ": the output works with both, but check that the endpoint is the intended cluster")
	} else {
		o.logger.Info(o.kind+": server identified", "server", s.String())
	}
	return s, nil
}

// parseRoot reads a GET / answer. It returns an error wrapping
// errUnsupported for anything but Elasticsearch >= 7 and OpenSearch >= 1.
func parseRoot(body []byte) (*serverInfo, error) {
	var r struct {
		Tagline string `json:"tagline"`
		Version struct {
			Number       string `json:"number"`
			Distribution string `json:"distribution"`
			BuildFlavor  string `json:"build_flavor"`
		} `json:"version"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Version.Number == "" {
		return nil, fmt.Errorf("%w: the answer has no version.number: not an Elasticsearch or OpenSearch node (check endpoints)", errUnsupported)
	}
	s := &serverInfo{version: r.Version.Number}
	parts := strings.SplitN(r.Version.Number, ".", 3)
	s.major, _ = strconv.Atoi(parts[0])
	if len(parts) > 1 {
		s.minor, _ = strconv.Atoi(parts[1])
	}
	switch {
	case r.Version.Distribution == "opensearch":
		s.distribution = OpenSearch
		if s.major < 1 {
			return nil, fmt.Errorf("%w: OpenSearch %s", errUnsupported, s.version)
		}
		s.composableTemplates = true
	case r.Version.Distribution == "" && strings.Contains(r.Tagline, "You Know, for Search"):
		s.distribution = Elasticsearch
		if s.major < 7 {
			return nil, fmt.Errorf("%w: Elasticsearch %s: sidelog needs Elasticsearch 7.0 or newer (typeless bulk requests)", errUnsupported, s.version)
		}
		s.composableTemplates = s.major > 7 || s.minor >= 8
		// Elastic Cloud Serverless reports a fixed 8.11.0 but runs current
		// code.
		s.requireDataStream = s.major > 8 || s.major == 8 && s.minor >= 13 || r.Version.BuildFlavor == "serverless"
	default:
		return nil, fmt.Errorf("%w: the answer (version %s, distribution %q) is neither Elasticsearch nor OpenSearch", errUnsupported, s.version, r.Version.Distribution)
	}
	return s, nil
}
