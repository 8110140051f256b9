package elasticsearch

import (
	"encoding/base64"
	"errors"
	"net"
	"strconv"
	"strings"
)

// Elastic Cloud's cloud_id.
//
// The Cloud ID the Elastic Cloud console shows is `<label>:<base64>`; the
// label (optional, with its colon) is for people and ignored. The base64
// text decodes to `<host>$<es_uuid>$<kibana_uuid>` (Kibana's part may be
// absent). The cluster's URL is https://<es_uuid>.<host>:<port>, port 443
// unless the host names one (`host:9243`) or the es_uuid part does
// (`es_uuid:9243`, which wins).

// decodeCloudID returns the Elasticsearch URL of a Cloud ID.
func decodeCloudID(id string) (string, error) {
	enc := strings.TrimSpace(id)
	if i := strings.LastIndexByte(enc, ':'); i >= 0 {
		enc = enc[i+1:]
	}
	if enc == "" {
		return "", errors.New("empty: copy the Cloud ID from the deployment's page of the Elastic Cloud console")
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		// Some consoles and copies drop the padding.
		if raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(enc, "=")); err != nil {
			return "", errors.New("not a Cloud ID (<label>:<base64 text>): the part after the colon is not base64")
		}
	}
	parts := strings.Split(string(raw), "$")
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return "", errors.New("not a Cloud ID: its base64 part does not decode to <host>$<elasticsearch id>$<kibana id>")
	}
	host, port := parts[0], "443"
	if h, p, err := net.SplitHostPort(host); err == nil {
		host, port = h, p
	}
	esID := parts[1]
	if i := strings.IndexByte(esID, ':'); i >= 0 {
		esID, port = esID[:i], esID[i+1:]
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", errors.New("not a Cloud ID: invalid port " + strconv.Quote(port))
	}
	for _, s := range []string{host, esID} {
		if s == "" || strings.ContainsAny(s, "/?#@ \t\r\n") {
			return "", errors.New("not a Cloud ID: its base64 part does not hold a host name")
		}
	}
	return "https://" + esID + "." + host + ":" + port, nil
}

// endpoints returns the configured endpoints, or the Cloud ID's URL.
func (c *Config) endpoints() []string {
	if len(c.Endpoints) == 0 && c.CloudID != "" {
		if u, err := decodeCloudID(c.CloudID); err == nil {
			return []string{u}
		}
	}
	return c.Endpoints
}
