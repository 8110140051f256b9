package datadog

import (
	"bytes"
	"context"
	"net/http"
	"runtime"
)

// The request of LogsApi.SubmitLog, as the official client
// (datadog-api-client-go/v2, api/datadog) builds it: the operation's server
// "https://{subdomain}.{site}" with the subdomain "http-intake.logs", or the
// override "{protocol}://{name}" that an endpoint gives; the path
// /api/v2/logs; Content-Type and Accept application/json; the API key in
// DD-API-KEY; a User-Agent in the client's format. The
// tests compare each part with the client (see the package comment).

// intakeURL is where the output posts: the site's log intake, or the
// endpoint that overrides it (validated by Config.Validate).
func intakeURL(c *Config) string {
	if c.Endpoint != "" {
		proto, name, _ := parseEndpoint(c.Endpoint)
		return proto + "://" + name + "/api/v2/logs"
	}
	return "https://http-intake.logs." + c.Site + "/api/v2/logs"
}

// userAgent is the client's "<name>/<version> (go <v>; os <os>; arch <a>)"
// with sidelog's name and version.
func userAgent(version string) string {
	if version == "" {
		version = "dev"
	}
	return "sidelog/" + version + " (go " + runtime.Version() + "; os " + runtime.GOOS + "; arch " + runtime.GOARCH + ")"
}

// newIntakeRequest returns the POST of body (gzip-compressed when gz).
func newIntakeRequest(ctx context.Context, url, apiKey, ua string, gz bool, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"application/json"},
		"Dd-Api-Key":   {apiKey},
		"User-Agent":   {ua},
	}
	if gz {
		req.Header["Content-Encoding"] = []string{"gzip"}
	}
	return req, nil
}
