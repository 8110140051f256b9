package datadog

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"os"
	"time"
)

// build returns the tls.Config of the block: the system's roots plus
// ca_file. Errors name their key.
func (t *TLSConfig) build() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // the user's explicit choice
	if t.CAFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, keyErr("tls.ca_file", "%v", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, keyErr("tls.ca_file", "%s holds no PEM certificate", t.CAFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// newTransport returns the HTTP transport of the output: the proxy from
// `proxy:` or else from HTTPS_PROXY/HTTP_PROXY/NO_PROXY, the `tls:` block,
// and idle connections closed before the usual 60 s of load balancers.
func newTransport(c *Config) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyFromEnvironment
	if c.Proxy != "" {
		u, err := url.Parse(c.Proxy)
		if err != nil {
			return nil, keyErr("proxy", "invalid URL")
		}
		tr.Proxy = http.ProxyURL(u)
	}
	if c.TLS != nil {
		tc, err := c.TLS.build()
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	tr.MaxIdleConnsPerHost = max(4, 2*c.MaxInFlight)
	tr.IdleConnTimeout = 30 * time.Second
	return tr, nil
}
