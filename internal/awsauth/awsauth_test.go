package awsauth

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/sidelog/sidelog/internal/awsauth/sigv4check"
)

type rotating struct{ n atomic.Int32 }

func (r *rotating) Retrieve(context.Context) (aws.Credentials, error) {
	n := r.n.Add(1)
	id := "AKIDROTATE1"
	if n%2 == 0 {
		id = "AKIDROTATE2"
	}
	return aws.Credentials{AccessKeyID: id, SecretAccessKey: "secret-of-" + id}, nil
}

// tamper changes the body's last byte after signing, as a broken proxy.
type tamper struct{ next http.RoundTripper }

func (t tamper) RoundTrip(r *http.Request) (*http.Response, error) {
	b, _ := io.ReadAll(r.Body)
	b[len(b)-1] ^= 1
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(b))
	return t.next.RoundTrip(r2)
}

func upstream(t *testing.T) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(s.Close)
	return s.URL
}

func send(t *testing.T, rt http.RoundTripper, url string, body []byte) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/idx/_bulk?refresh=false&pipeline=a%20b", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestEachAttemptSigned: every request is signed with the credentials of
// that moment (the provider's answer changes between calls) and the
// checker (botocore) verifies each; the same request object sent twice
// (a retry) is signed twice.
func TestEachAttemptSigned(t *testing.T) {
	chk := sigv4check.Start(t, upstream(t), "us-east-1", ServiceES, map[string]sigv4check.Key{
		"AKIDROTATE1": {Secret: "secret-of-AKIDROTATE1"},
		"AKIDROTATE2": {Secret: "secret-of-AKIDROTATE2"},
	})
	rt := NewTransport(http.DefaultTransport, &rotating{}, Options{Region: "us-east-1", Service: ServiceES})
	body := []byte("{\"index\":{}}\n{\"msg\":\"héllo\"}\n")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, chk.URL+"/_bulk", bytes.NewReader(body))
	for i := 0; i < 2; i++ {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("attempt %d: HTTP %d: %+v", i, resp.StatusCode, chk.Log(t).Refused())
		}
		if req.Header.Get("Authorization") != "" {
			t.Fatal("the caller's request was modified")
		}
	}
	if st := send(t, rt, chk.URL, nil); st != 200 {
		t.Fatalf("empty body with a query: HTTP %d: %+v", st, chk.Log(t).Refused())
	}
	l := chk.Log(t)
	if len(l.Requests) != 3 || len(l.Refused()) != 0 {
		t.Fatalf("log %+v", l.Requests)
	}
	if l.Requests[0].AKID == l.Requests[1].AKID {
		t.Fatal("the retry reused the first attempt's credentials")
	}
}

// TestTamperedBodyRefused: the checker recomputes the payload hash: a body
// changed after signing is refused.
func TestTamperedBodyRefused(t *testing.T) {
	for _, svc := range []string{ServiceES, ServiceAOSS} {
		t.Run(svc, func(t *testing.T) {
			chk := sigv4check.Start(t, upstream(t), "us-east-1", svc, map[string]sigv4check.Key{
				"AKIDROTATE1": {Secret: "secret-of-AKIDROTATE1"},
			})
			creds := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				return aws.Credentials{AccessKeyID: "AKIDROTATE1", SecretAccessKey: "secret-of-AKIDROTATE1"}, nil
			})
			good := NewTransport(http.DefaultTransport, creds, Options{Region: "us-east-1", Service: svc})
			if st := send(t, good, chk.URL, []byte("{\"index\":{}}\n{}\n")); st != 200 {
				t.Fatalf("HTTP %d: %+v", st, chk.Log(t).Refused())
			}
			bad := NewTransport(tamper{http.DefaultTransport}, creds, Options{Region: "us-east-1", Service: svc})
			if st := send(t, bad, chk.URL, []byte("{\"index\":{}}\n{}\n")); st != 403 {
				t.Fatalf("tampered body: HTTP %d", st)
			}
			wrongRegion := NewTransport(http.DefaultTransport, creds, Options{Region: "eu-west-1", Service: svc})
			if st := send(t, wrongRegion, chk.URL, []byte("{}\n")); st != 403 {
				t.Fatalf("wrong region: HTTP %d", st)
			}
			r := chk.Log(t).Refused()
			if len(r) != 2 || !strings.Contains(r[0].Reason, "hash") {
				t.Fatalf("refusals %+v", r)
			}
		})
	}
}
