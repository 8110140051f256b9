package elasticsearch

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/sidelog/sidelog/internal/awsauth"
	"github.com/sidelog/sidelog/plugins"
)

// AuthConfig is the `auth:` block: authentication methods beside
// username/password, api_key and bearer_token.
type AuthConfig struct {
	// AWS signs every request with SigV4 (Amazon OpenSearch Service and
	// OpenSearch Serverless).
	AWS *AWSAuthConfig `yaml:"aws"`
}

// AWSAuthConfig is `auth.aws`.
type AWSAuthConfig struct {
	// Region of the domain or collection, e.g. eu-west-1.
	Region string `yaml:"region"`
	// Service is es (OpenSearch Service domains, the default) or aoss
	// (OpenSearch Serverless collections).
	Service string `yaml:"service"`
	// RoleARN is a role to assume with the standard chain's credentials.
	RoleARN string `yaml:"role_arn"`
}

// aws returns the auth.aws block, or nil.
func (c *Config) aws() *AWSAuthConfig {
	if c.Auth == nil {
		return nil
	}
	return c.Auth.AWS
}

// serverless tells whether the output writes to OpenSearch Serverless.
func (c *Config) serverless() bool {
	a := c.aws()
	return a != nil && a.Service == awsauth.ServiceAOSS
}

// validateManaged checks auth.aws, cloud_id and tls.ca_fingerprint.
func (c *Config) validateManaged(add func(key, format string, args ...any)) {
	if a := c.aws(); a != nil {
		if a.Service == "" {
			a.Service = awsauth.ServiceES
		}
		switch a.Service {
		case awsauth.ServiceES, awsauth.ServiceAOSS:
		default:
			add("auth.aws.service", "must be es (OpenSearch Service) or aoss (OpenSearch Serverless), not %q", a.Service)
		}
		if a.Region == "" {
			add("auth.aws.region", "is required (the domain's or collection's region, e.g. eu-west-1)")
		} else if strings.ContainsAny(a.Region, " /\\:\"") {
			add("auth.aws.region", "not a region name: %q", a.Region)
		}
		if a.RoleARN != "" && !strings.HasPrefix(a.RoleARN, "arn:") {
			add("auth.aws.role_arn", "must be a role ARN (arn:aws:iam::<account>:role/<name>), not %q", a.RoleARN)
		}
		if c.Username != "" || c.Password != "" || c.APIKey != "" || c.BearerToken != "" {
			add("auth.aws", "signs every request: username/password, api_key and bearer_token cannot be set with it")
		}
		if a.Service == awsauth.ServiceAOSS && c.ID == "source" {
			add("id", "OpenSearch Serverless (auth.aws.service: aoss) refuses a custom _id in time-series collections: set id: none "+
				"(the collection assigns ids; delivery stays at-least-once: a batch retried after a lost answer may be indexed twice)")
		}
	}
	if c.serverless() && c.Lifecycle != "" {
		add("lifecycle", "OpenSearch Serverless has no ISM or index lifecycle: retention is the collection's data lifecycle policy (aoss:UpdateLifecyclePolicy)")
	}
	if c.CloudID != "" {
		if len(c.Endpoints) > 0 {
			add("cloud_id", "set either cloud_id or endpoints, not both")
		}
		if _, err := decodeCloudID(c.CloudID); err != nil {
			add("cloud_id", "%v", err)
		}
	}
}

// signingTransport wraps rt in the SigV4 signer when auth.aws is set.
func (c *Config) signingTransport(rt http.RoundTripper) (http.RoundTripper, error) {
	a := c.aws()
	if a == nil {
		return rt, nil
	}
	opts := awsauth.Options{Region: a.Region, Service: a.Service, RoleARN: a.RoleARN}
	creds, err := awsauth.Credentials(context.Background(), opts)
	if err != nil {
		return nil, &plugins.KeyError{Key: "auth.aws", Err: err}
	}
	return awsauth.NewTransport(rt, creds, opts), nil
}

// probeManaged is the start-up probe. OpenSearch Serverless may not serve
// GET / (or answer it with something that is not a node's banner): there
// the probe degrades to a warning and conservative defaults (no optional
// request parameters) instead of refusing the server.
func (o *Output) probeManaged(ctx context.Context) (*serverInfo, error) {
	s, err := o.probe(ctx)
	if err != nil && o.cfg.serverless() && errors.Is(err, errUnsupported) {
		o.logger.Warn(o.kind+": OpenSearch Serverless did not identify itself on GET /: going on with conservative defaults",
			"answer", err.Error())
		return &serverInfo{}, nil
	}
	return s, err
}
