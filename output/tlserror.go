package output

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
)

// IsTLSError reports whether err is a failed certificate verification of
// the server (an unknown authority, an invalid or expired certificate, a
// host name it does not cover): a configuration problem (a CA file, a
// server name) that outputs report as their blocked reason "tls_error", not
// as an unreachable server.
func IsTLSError(err error) bool {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &host) || errors.As(err, &verify)
}
