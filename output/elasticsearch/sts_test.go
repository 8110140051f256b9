package elasticsearch

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/sidelog/sidelog/internal/awsauth"
	"github.com/sidelog/sidelog/internal/awsauth/sigv4check"
	"github.com/sidelog/sidelog/output/elasticsearch/estest"
	"github.com/sidelog/sidelog/plugins"
)

// stsStub answers AssumeRoleWithWebIdentity on 127.0.0.1 with credentials
// that last `life`, and registers each with the signature checker (which
// refuses them once expired).
type stsStub struct {
	mu     sync.Mutex
	issued []string
	errs   []string
}

func (s *stsStub) handler(chk *sigv4check.Server, token, role string, life time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if r.Form.Get("Action") != "AssumeRoleWithWebIdentity" || r.Form.Get("WebIdentityToken") != token || r.Form.Get("RoleArn") != role {
			s.errs = append(s.errs, fmt.Sprintf("unexpected STS call %v", r.Form))
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>bad</Message></Error></ErrorResponse>`))
			return
		}
		n := len(s.issued) + 1
		akid := fmt.Sprintf("ASIAWEBID%08d", n)
		secret := fmt.Sprintf("web-identity-secret-%d", n)
		session := fmt.Sprintf("web-identity-session-%d", n)
		exp := time.Now().Add(life)
		if err := chk.Add(map[string]sigv4check.Key{akid: {Secret: secret, Token: session, Expires: float64(exp.UnixNano()) / 1e9}}); err != nil {
			s.errs = append(s.errs, err.Error())
			w.WriteHeader(500)
			return
		}
		s.issued = append(s.issued, akid)
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>%s</AccessKeyId>
      <SecretAccessKey>%s</SecretAccessKey>
      <SessionToken>%s</SessionToken>
      <Expiration>%s</Expiration>
    </Credentials>
    <SubjectFromWebIdentityToken>system:serviceaccount:logging:sidelog</SubjectFromWebIdentityToken>
    <AssumedRoleUser><Arn>%s/sidelog</Arn><AssumedRoleId>AROATEST:sidelog</AssumedRoleId></AssumedRoleUser>
    <Provider>oidc.eks.eu-west-1.amazonaws.com</Provider>
    <Audience>sts.amazonaws.com</Audience>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>req-%d</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>`, akid, secret, session, exp.UTC().Format(time.RFC3339Nano), role, n)
	})
}

func (s *stsStub) state() ([]string, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{}, s.issued...), append([]string{}, s.errs...)
}

// TestWebIdentityRefresh: IRSA (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)
// against an STS stub whose credentials last 3 s and are refused by the
// checker once expired: the output keeps writing across several expiries
// without one refused request, the SDK's cache fetching new credentials
// before the old ones expire.
func TestWebIdentityRefresh(t *testing.T) {
	s := estest.New()
	t.Cleanup(s.Close)
	s.Distribution = OpenSearch
	chk := sigv4check.Start(t, s.URL, testRegion, "es", nil)

	const role = "arn:aws:iam::123456789012:role/sidelog"
	token := "eyJhbGciOiJSUzI1NiJ9.test-projected-token.sig"
	stub := &stsStub{}
	sts := httptest.NewServer(stub.handler(chk, token, role, 3*time.Second))
	t.Cleanup(sts.Close)

	awsEnv(t, "", "")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tokenFile)
	t.Setenv("AWS_ROLE_ARN", role)
	t.Setenv("AWS_ROLE_SESSION_NAME", "sidelog")
	t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL)
	t.Setenv("AWS_REGION", testRegion)
	old := awsauth.ExpiryWindow
	awsauth.ExpiryWindow = 1500 * time.Millisecond
	t.Cleanup(func() { awsauth.ExpiryWindow = old })

	o := testOutput(t, func(c *Config) {
		c.Endpoints = []string{chk.URL}
		c.Index = "app-{{ service }}"
		c.Auth = &AuthConfig{AWS: &AWSAuthConfig{Region: testRegion, Service: "es"}}
	}, plugins.OutputEnv{Name: "irsa"})

	// Write until the stub has issued 4 credentials (3 refreshes), i.e.
	// across 3 expiries; every write must succeed.
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for {
		issued, errs := stub.state()
		if len(errs) > 0 {
			t.Fatal(errs[0])
		}
		if len(issued) >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d credentials issued in 60 s", len(issued))
		}
		if err := o.Write(t.Context(), docs(t, o, n, 2)); err != nil {
			t.Fatalf("write %d failed (credentials %v): %v; refused: %+v", n/2, issued, err, chk.Log(t).Refused())
		}
		n += 2
		<-tick.C
	}
	l := noRefusals(t, chk)
	used := map[string]bool{}
	for _, e := range l.Requests {
		used[e.AKID] = true
	}
	if len(used) < 3 {
		t.Fatalf("requests were signed with %d credentials, want at least 3: %v", len(used), used)
	}
	if got := s.Count("app-svc"); got != n {
		t.Fatalf("indexed %d of %d", got, n)
	}

	// The first credentials really expired during the run: the checker
	// now refuses a request signed with them.
	first := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: "ASIAWEBID00000001", SecretAccessKey: "web-identity-secret-1", SessionToken: "web-identity-session-1"}, nil
	})
	rt := awsauth.NewTransport(http.DefaultTransport, first, awsauth.Options{Region: testRegion, Service: "es"})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, chk.URL+"/", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := chk.Log(t).Refused()
	if resp.StatusCode != 403 || len(r) != 1 || !strings.Contains(r[0].Reason, "expired") {
		t.Fatalf("expired credentials: HTTP %d, refusals %+v", resp.StatusCode, r)
	}
}
