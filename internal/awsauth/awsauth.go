// Package awsauth signs HTTP requests with AWS Signature Version 4 for the
// managed search services (Amazon OpenSearch Service: service "es";
// OpenSearch Serverless: service "aoss"), with the AWS SDK for Go v2's
// signer and its standard credential chain.
//
// The signing happens in an http.RoundTripper, below the client's node
// pool and retries: every attempt (a retry on another node, a 413 split,
// the delivery loop's next try) is signed again from the bytes it
// actually carries (the gzip body, not the records), with the credentials
// the SDK's cache holds at that moment. A signed request is never reused:
// a signature is valid for 5 minutes and a credential may have expired in
// between.
package awsauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Services that may be signed for.
const (
	ServiceES   = "es"   // Amazon OpenSearch Service (managed domains)
	ServiceAOSS = "aoss" // Amazon OpenSearch Serverless
)

// ExpiryWindow is how long before their expiry cached credentials are
// refreshed: a request signed just before expiry could reach the service
// after it. Temporary credentials (web identity, role, pod identity, IMDS)
// last 15 minutes at least. A variable for the tests, whose stub issues
// credentials that last seconds.
var ExpiryWindow = 2 * time.Minute

// CredentialsError is a request that was not sent because the credential
// chain gave no credentials: nothing configured, a web identity token the
// STS refused, an unreachable instance metadata service. Outputs report it
// as their blocked reason ("aws_credentials"), not as an unreachable
// server.
type CredentialsError struct{ Err error }

func (e *CredentialsError) Error() string {
	return "aws sigv4: no credentials from the AWS credential chain (environment, shared config, web identity, pod identity, instance metadata): " + e.Err.Error()
}

func (e *CredentialsError) Unwrap() error { return e.Err }

// Options name what to sign for.
type Options struct {
	Region  string
	Service string // ServiceES or ServiceAOSS
	// RoleARN, when set, is assumed (sts:AssumeRole) with the credentials
	// of the standard chain.
	RoleARN string
	// SessionName for RoleARN (default "sidelog").
	SessionName string
}

// Credentials returns the standard credential chain of the AWS SDK
// (environment, shared config and credentials files, web identity / IRSA,
// EKS Pod Identity, ECS container credentials, EC2 instance metadata),
// behind the SDK's cache, and the role to assume on top of it. Nothing is
// fetched here: the first request does.
func Credentials(ctx context.Context, o Options) (aws.CredentialsProvider, error) {
	cacheOpts := func(c *aws.CredentialsCacheOptions) { c.ExpiryWindow = ExpiryWindow }
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion(o.Region),
		config.WithCredentialsCacheOptions(cacheOpts),
	)
	if err != nil {
		return nil, fmt.Errorf("aws: loading the shared configuration: %w", err)
	}
	if o.RoleARN == "" {
		return cfg.Credentials, nil
	}
	name := o.SessionName
	if name == "" {
		name = "sidelog"
	}
	p := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), o.RoleARN, func(a *stscreds.AssumeRoleOptions) {
		a.RoleSessionName = name
	})
	return aws.NewCredentialsCache(p, cacheOpts), nil
}

// Transport signs each request it sends with SigV4.
type Transport struct {
	next    http.RoundTripper
	creds   aws.CredentialsProvider
	signer  *v4.Signer
	region  string
	service string
	now     func() time.Time
}

// NewTransport signs the requests next sends with the credentials of creds.
func NewTransport(next http.RoundTripper, creds aws.CredentialsProvider, o Options) *Transport {
	return &Transport{
		next:    next,
		creds:   creds,
		signer:  v4.NewSigner(),
		region:  o.Region,
		service: o.Service,
		now:     time.Now,
	}
}

// RoundTrip signs a copy of req (the body read whole, hashed and sent as
// read) and sends it.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readBody(req)
	if err != nil {
		return nil, fmt.Errorf("aws sigv4: reading the request body: %w", err)
	}
	ctx := req.Context()
	creds, err := t.creds.Retrieve(ctx)
	if err != nil {
		return nil, &CredentialsError{Err: err}
	}
	r := req.Clone(ctx)
	if body != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		r.ContentLength = int64(len(body))
	} else {
		r.Body = nil
		r.GetBody = nil
		r.ContentLength = 0
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	// OpenSearch Serverless requires the payload hash as a header; the
	// managed domains accept it. Sent for both: one code path.
	r.Header.Set("X-Amz-Content-Sha256", hash)
	// A stale signature of an earlier attempt never travels.
	r.Header.Del("Authorization")
	r.Header.Del("X-Amz-Date")
	r.Header.Del("X-Amz-Security-Token")
	if err := t.signer.SignHTTP(ctx, creds, r, hash, t.service, t.region, t.now().UTC()); err != nil {
		return nil, fmt.Errorf("aws sigv4: signing: %w", err)
	}
	return t.next.RoundTrip(r)
}

// CloseIdleConnections passes through to the wrapped transport.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	if req.GetBody != nil {
		rc, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		// The original body is not read: close it as the transport would.
		defer req.Body.Close()
		return io.ReadAll(rc)
	}
	defer req.Body.Close()
	return io.ReadAll(req.Body)
}
