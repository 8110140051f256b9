package elasticsearch

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// tls.ca_fingerprint: certificate pinning for a self-managed cluster with
// a self-signed certificate (Elasticsearch 8 prints its HTTP CA's
// fingerprint at first start). The server's chain is accepted when one of
// the certificates it presents (its CA or the leaf) has that SHA-256
// fingerprint, as Elastic's own clients do; the system's roots and
// tls.ca_file are not consulted then, and the host name is not checked
// (the pin names the server).

// parseFingerprint reads a hex SHA-256 fingerprint, colons and case free
// ("A1:B2:..." as openssl prints it, or "a1b2...").
func parseFingerprint(s string) ([]byte, error) {
	h := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("must be the certificate's SHA-256 fingerprint: 64 hex digits, colons allowed " +
			"(openssl x509 -noout -fingerprint -sha256 -in ca.crt)")
	}
	return b, nil
}

// pinFingerprint makes cfg accept exactly the chains holding the pinned
// certificate.
func pinFingerprint(cfg *tls.Config, fp []byte) {
	cfg.InsecureSkipVerify = true //nolint:gosec // replaced by VerifyConnection below
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		return checkPin(cs.PeerCertificates, fp)
	}
}

// pinError is a TLS handshake refused because no certificate of the
// server's chain has the pinned fingerprint: the output's blocked reason is
// "tls_error", not an unreachable server.
type pinError struct{ msg string }

func (e *pinError) Error() string { return e.msg }

func checkPin(certs []*x509.Certificate, fp []byte) error {
	if len(certs) == 0 {
		return &pinError{"tls.ca_fingerprint: the server presented no certificate"}
	}
	for _, c := range certs {
		sum := sha256.Sum256(c.Raw)
		if bytes.Equal(sum[:], fp) {
			return nil
		}
	}
	sum := sha256.Sum256(certs[len(certs)-1].Raw)
	return &pinError{fmt.Sprintf("tls.ca_fingerprint: no certificate of the server's chain (%d, the last %q with SHA-256 %s) has the pinned fingerprint: "+
		"wrong server, or its certificate was renewed", len(certs), certs[len(certs)-1].Subject.String(), colonHex(sum[:]))}
}

func colonHex(b []byte) string {
	var sb strings.Builder
	for i, x := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02X", x)
	}
	return sb.String()
}
