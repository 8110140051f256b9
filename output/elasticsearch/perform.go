package elasticsearch

import (
	"bytes"
	"context"
	"errors"
	"net/http"

	"github.com/sidelog/sidelog/internal/awsauth"
	"github.com/sidelog/sidelog/output"
)

// perform sends one request through the official transport
// (elastictransport: node pool, auth, retries on another node, gzip), with
// the path relative to the node's URL.
//
// The output builds its few requests itself instead of through esapi, the
// client's generated request package: esapi is one package of several
// hundred files whose cold compile takes about 125 CPU seconds and 1.9 GB
// of memory (measured with -toolexec, docs/benchmarks.md), more than the
// rest of the agent together, for a struct per endpoint that fills in a
// method and a path.
func (o *Output) perform(ctx context.Context, method, path string, hdr http.Header, body []byte) (*http.Response, error) {
	var rd *bytes.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequestWithContext(ctx, method, path, rd)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, path, nil)
	}
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	return o.client.Perform(req)
}

// transportReason names the blocked reason of a request that got no answer:
// the AWS credential chain gave nothing ("aws_credentials"), the server's
// certificate failed tls.ca_fingerprint or verification ("tls_error"), or
// the server could not be reached ("server_unreachable"). The first two are
// configuration problems an operator fixes; the last may pass by itself.
func transportReason(err error) string {
	var ce *awsauth.CredentialsError
	var pe *pinError
	switch {
	case errors.As(err, &ce):
		return "aws_credentials"
	case errors.As(err, &pe), output.IsTLSError(err):
		return "tls_error"
	}
	return "server_unreachable"
}
