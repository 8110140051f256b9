package elasticsearch

import (
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/internal/awsauth/sigv4check"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
	"github.com/sidelog/sidelog/plugins"
)

// awsEnv gives the standard credential chain static keys from the
// environment and nothing else (no shared files, no instance metadata).
func awsEnv(t *testing.T, akid, secret string) {
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", akid)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_ROLE_ARN", "")
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
}

const (
	testAKID   = "AKIDSIDELOGTEST1"
	testSecret = "c2lkZWxvZy10ZXN0LXNlY3JldC1rZXktbm90LXJlYWw"
	testRegion = "eu-west-1"
)

// signedSetup starts the stand-in behind the botocore checker and an
// output signing for service.
func signedSetup(t *testing.T, service string, mod func(c *Config)) (*estest.Server, *sigv4check.Server, *Output) {
	t.Helper()
	s := estest.New()
	t.Cleanup(s.Close)
	s.Distribution = OpenSearch
	s.KeepRequests = true
	chk := sigv4check.Start(t, s.URL, testRegion, service, map[string]sigv4check.Key{testAKID: {Secret: testSecret}})
	awsEnv(t, testAKID, testSecret)
	o := testOutput(t, func(c *Config) {
		c.Endpoints = []string{chk.URL}
		c.Index = "app-{{ service }}"
		c.Auth = &AuthConfig{AWS: &AWSAuthConfig{Region: testRegion, Service: service}}
		if service == "aoss" {
			c.ID = "none"
		}
		if mod != nil {
			mod(c)
		}
	}, plugins.OutputEnv{Name: "aws"})
	return s, chk, o
}

func noRefusals(t *testing.T, chk *sigv4check.Server) sigv4check.Log {
	t.Helper()
	l := chk.Log(t)
	if r := l.Refused(); len(r) > 0 {
		t.Fatalf("botocore refused %d signed requests, e.g. %+v", len(r), r[0])
	}
	return l
}

func bulkEntries(l sigv4check.Log) int {
	n := 0
	for _, e := range l.Requests {
		if e.OK && strings.Contains(e.Path, "_bulk") {
			n++
		}
	}
	return n
}

// TestSigV4Verified: the probe and the bulk requests, gzip or not, carry
// signatures that botocore recomputes from the bytes it received.
func TestSigV4Verified(t *testing.T) {
	for _, comp := range []string{"gzip", "none"} {
		t.Run(comp, func(t *testing.T) {
			s, chk, o := signedSetup(t, "es", func(c *Config) { c.Compression = comp })
			if err := o.Write(t.Context(), docs(t, o, 0, 20)); err != nil {
				t.Fatal(err)
			}
			if err := o.Write(t.Context(), docs(t, o, 20, 5)); err != nil {
				t.Fatal(err)
			}
			if n := s.Count("app-svc"); n != 25 {
				t.Fatalf("indexed %d, want 25", n)
			}
			l := noRefusals(t, chk)
			if n := bulkEntries(l); n != 2 {
				t.Fatalf("%d verified bulk requests, want 2", n)
			}
			reqs := s.Requests()
			if comp == "gzip" && reqs[0].Header.Get("Content-Encoding") != "gzip" {
				t.Fatal("the request was not gzip: the test does not check the compressed path")
			}
		})
	}
}

// TestSigV4Refused: the checker is not a rubber stamp: a wrong secret is
// refused with 403 and nothing is indexed (a body changed after signing:
// internal/awsauth).
func TestSigV4Refused(t *testing.T) {
	t.Run("wrong secret", func(t *testing.T) {
		s, chk, o := signedSetup(t, "es", nil)
		awsEnv(t, testAKID, "not-the-secret")
		o = testOutput(t, func(c *Config) {
			c.Endpoints = []string{chk.URL}
			c.Index = "app-{{ service }}"
			c.Auth = &AuthConfig{AWS: &AWSAuthConfig{Region: testRegion, Service: "es"}}
		}, plugins.OutputEnv{Name: "aws"})
		err := o.Write(t.Context(), docs(t, o, 0, 3))
		if err == nil {
			t.Fatal("a wrong secret was accepted")
		}
		if s.Count("app-svc") != 0 {
			t.Fatal("documents indexed with a bad signature")
		}
		r := chk.Log(t).Refused()
		if len(r) == 0 || !strings.Contains(r[0].Reason, "signature") {
			t.Fatalf("refusals: %+v", r)
		}
	})
}

// TestSigV4RetryAndSplit: a 503 and its retry, and the halves of a 413
// split, are each signed for the bytes they carry.
func TestSigV4RetryAndSplit(t *testing.T) {
	t.Run("retry after 503", func(t *testing.T) {
		s, chk, o := signedSetup(t, "es", nil)
		s.Fault = func(n int, r *http.Request) *estest.RequestFault {
			if n == 1 {
				return &estest.RequestFault{Status: 503}
			}
			return nil
		}
		batch := docs(t, o, 0, 10)
		err := o.Write(t.Context(), batch)
		if err == nil {
			t.Fatal("503 not reported")
		}
		if c, _ := output.Classify(err); c == output.Permanent {
			t.Fatalf("503 classified permanent: %v", err)
		}
		if err := o.Write(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		if n := s.Count("app-svc"); n != 10 {
			t.Fatalf("indexed %d", n)
		}
		if n := bulkEntries(noRefusals(t, chk)); n != 2 {
			t.Fatalf("%d verified bulk requests, want 2 (the 503 and the retry)", n)
		}
	})
	t.Run("413 split", func(t *testing.T) {
		for _, comp := range []string{"gzip", "none"} {
			t.Run(comp, func(t *testing.T) {
				s, chk, o := signedSetup(t, "es", func(c *Config) { c.Compression = comp })
				batch := docs(t, o, 0, 40)
				s.MaxContentLength = 700 // several splits, gzip or not
				if comp == "none" {
					s.MaxContentLength = 2000
				}
				if err := o.Write(t.Context(), batch); err != nil {
					t.Fatal(err)
				}
				if n := s.Count("app-svc"); n != 40 {
					t.Fatalf("indexed %d", n)
				}
				l := noRefusals(t, chk)
				if n := bulkEntries(l); n < 3 {
					t.Fatalf("%d verified bulk requests: no split happened", n)
				}
				var big int
				for _, e := range l.Requests {
					if strings.Contains(e.Path, "_bulk") && e.Bytes > s.MaxContentLength {
						big++ // verified by botocore, then refused with 413
					}
				}
				if big == 0 {
					t.Fatal("no request was refused with 413")
				}
			})
		}
	})
}

// TestServerless: service aoss sends x-amz-content-sha256 (the checker
// refuses a request without it), a GET / that is not served degrades the
// probe, and id: source is refused at start-up.
func TestServerless(t *testing.T) {
	s, chk, o := signedSetup(t, "aoss", nil)
	// GET / answered with a status no node gives it: a domain would be
	// refused as "not an Elasticsearch or OpenSearch node"; Serverless
	// degrades to a warning.
	s.Refuse = func(method, path string) int {
		if path == "/" {
			return 400
		}
		return 0
	}
	if err := o.Write(t.Context(), docs(t, o, 0, 5)); err != nil {
		t.Fatal(err)
	}
	if n := s.Count("app-svc"); n != 5 {
		t.Fatalf("indexed %d", n)
	}
	for _, r := range s.Requests() {
		if r.Header.Get("X-Amz-Content-Sha256") != "" {
			t.Fatal("the upstream saw the checker's input: the test is not what it seems")
		}
	}
	if n := bulkEntries(noRefusals(t, chk)); n != 1 {
		t.Fatalf("%d verified bulk requests", n)
	}

	s2, _, o2 := signedSetup(t, "es", nil)
	s2.Refuse = s.Refuse
	if err := o2.Write(t.Context(), docs(t, o2, 0, 5)); err == nil || !strings.Contains(err.Error(), "not an Elasticsearch or OpenSearch node") {
		t.Fatalf("service es, GET / refused with 400: %v", err)
	}

	c := NewConfig()
	c.Endpoints = []string{"https://x.eu-west-1.aoss.amazonaws.com"}
	c.Auth = &AuthConfig{AWS: &AWSAuthConfig{Region: testRegion, Service: "aoss"}}
	err := c.Validate()
	var ke *plugins.KeyError
	if !errors.As(err, &ke) || ke.Key != "id" || !strings.Contains(err.Error(), "id: none") || !strings.Contains(err.Error(), "at-least-once") {
		t.Fatalf("id: source with aoss: %v", err)
	}
}

func TestAWSConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		key  string
	}{
		{"no region", func(c *Config) { c.Auth.AWS.Region = "" }, "auth.aws.region"},
		{"bad service", func(c *Config) { c.Auth.AWS.Service = "s3" }, "auth.aws.service"},
		{"bad role", func(c *Config) { c.Auth.AWS.RoleARN = "admin" }, "auth.aws.role_arn"},
		{"two methods", func(c *Config) { c.APIKey = "k" }, "auth.aws"},
		{"aoss lifecycle", func(c *Config) {
			c.Auth.AWS.Service = "aoss"
			c.ID = "none"
			c.Lifecycle = "p"
			c.Setup = new(true)
		}, "lifecycle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConfig()
			c.Endpoints = []string{"https://search-x.eu-west-1.es.amazonaws.com"}
			c.Auth = &AuthConfig{AWS: &AWSAuthConfig{Region: testRegion}}
			tc.mod(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.key+":") {
				t.Fatalf("want an error on %s, got %v", tc.key, err)
			}
		})
	}
	c := NewConfig()
	c.Endpoints = []string{"https://search-x.eu-west-1.es.amazonaws.com"}
	c.Auth = &AuthConfig{AWS: &AWSAuthConfig{Region: testRegion}}
	if err := c.Validate(); err != nil || c.Auth.AWS.Service != "es" {
		t.Fatalf("defaults: %v, service %q", err, c.Auth.AWS.Service)
	}
}

// TestSigV4NoCredentials: with no credentials anywhere in the chain the
// output sends nothing, is blocked with an error saying so, and nothing is
// given up (the delivery loop retries).
func TestSigV4NoCredentials(t *testing.T) {
	s := estest.New()
	t.Cleanup(s.Close)
	s.KeepRequests = true
	awsEnv(t, "", "")
	o := testOutput(t, func(c *Config) {
		c.Endpoints = []string{s.URL}
		c.Auth = &AuthConfig{AWS: &AWSAuthConfig{Region: testRegion}}
	}, plugins.OutputEnv{Name: "nocreds"})
	err := o.Write(t.Context(), docs(t, o, 0, 2))
	if err == nil || !strings.Contains(err.Error(), "no credentials") {
		t.Fatalf("got %v", err)
	}
	// The operator reads a credentials problem, not an unreachable server.
	if b, ok := delivery.AsBlocked(err); !ok || b.Reason != "aws_credentials" || b.Key != "" {
		t.Fatalf("want the whole output blocked on aws_credentials, got %v", err)
	}
	if c, _ := output.Classify(err); c == output.Permanent {
		t.Fatalf("classified permanent (records would be given up): %v", err)
	}
	t.Log(err)
	if len(s.Requests()) != 0 || s.Total() != 0 {
		t.Fatal("an unsigned request reached the server")
	}
}
