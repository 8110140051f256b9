package kafkaconf_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
	kafkain "github.com/sidelog/sidelog/input/kafka"
	"github.com/sidelog/sidelog/internal/kafkaconf"
	"github.com/sidelog/sidelog/internal/kafkatest"
	"github.com/sidelog/sidelog/internal/syncbuf"
	"github.com/sidelog/sidelog/internal/testservers"
	"github.com/sidelog/sidelog/output"
	kafkaout "github.com/sidelog/sidelog/output/kafka"
	"github.com/sidelog/sidelog/plugins"
)

// selfSigned returns a certificate for 127.0.0.1 that is its own CA, and
// its PKCS#8 key, as PEM.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sidelog test broker"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})
}

type collector struct {
	mu  sync.Mutex
	got map[string]bool
}

func (c *collector) emit(batch []*event.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range batch {
		c.got[string(e.Raw)] = true
		e.Done()
	}
	return nil
}

func (c *collector) has(want []string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The output writes each event as JSON; its line is the message.
	for _, w := range want {
		found := false
		for g := range c.got {
			found = found || strings.Contains(g, `"`+w+`"`)
		}
		if !found {
			return false
		}
	}
	return true
}

// Against a broker of the test's own whose client listener is SASL_SSL
// (a certificate made here, users given as PLAIN and SCRAM users): the
// kafka output produces and the kafka input consumes with each of PLAIN,
// SCRAM-SHA-256 and SCRAM-SHA-512 over TLS checked against the CA file; a
// wrong password blocks the whole output on authentication_failed (no
// dead-letter, not broker_unreachable), from the first request (the time
// is logged; before the fix it came after the record timeout, as a
// retryable error, with a fallback max.message.bytes cached).
func TestSecuredBroker(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	b := testservers.StartKafkaSecured(t, testservers.KafkaSecurity{
		Protocol: "SASL_SSL",
		Users:    map[string]string{"alice": "alice-secret"},
		CertPEM:  certPEM, KeyPEM: keyPEM,
	})
	topic := testservers.UniqueName(t, "sidelogtest")
	kafkatest.CreateTopic(t, b.Internal(), topic, 1, nil)
	conn := func(mech, pass string) kafkaconf.Conn {
		return kafkaconf.Conn{
			Brokers:     b.Brokers(),
			SASL:        &kafkaconf.SASLConfig{Mechanism: mech, Username: "alice", Password: pass},
			TLS:         &kafkaconf.TLSConfig{CAFile: ca},
			DialTimeout: 5 * time.Second,
		}
	}
	newOut := func(c kafkaconf.Conn) (*kafkaout.Output, *delivery.BlockState) {
		cfg := kafkaout.NewConfig()
		cfg.Conn = c
		cfg.Topic = topic
		cfg.Timeout = 10 * time.Second
		o, err := kafkaout.New(cfg, plugins.OutputEnv{Name: "bus", InstanceID: "i", Hostname: "h"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close(context.Background()) })
		bs := delivery.NewBlockState(nil)
		o.WatchBlocks(bs, "bus")
		return o, bs
	}
	encode := func(o *kafkaout.Output, lines []string) [][]byte {
		var recs [][]byte
		for i, l := range lines {
			r, err := o.Encode(nil, &event.Event{Raw: []byte(l), Time: time.Now(), Pos: event.Position{Offset: int64(i + 1)}})
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
		}
		return recs
	}

	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		var lines []string
		for i := range 5 {
			lines = append(lines, fmt.Sprintf("%s line %d", mech, i))
		}
		o, _ := newOut(conn(mech, "alice-secret"))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := o.Write(ctx, encode(o, lines)); err != nil {
			cancel()
			t.Fatalf("%s: Write: %v", mech, err)
		}
		ic := kafkain.NewConfig()
		ic.Conn = conn(mech, "alice-secret")
		ic.Topics = []string{topic}
		ic.Group = topic + "-" + strings.ToLower(mech)
		in, err := kafkain.New(ic, input.Env{Name: "from-agents"})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		c := &collector{got: map[string]bool{}}
		done := make(chan error, 1)
		go func() { done <- in.Run(ctx, c.emit) }()
		for !c.has(lines) {
			if ctx.Err() != nil {
				t.Fatalf("%s: the input did not read the lines the output wrote; it read %v", mech, c.got)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		<-done
		t.Logf("%s over TLS: output produced and input consumed %d lines", mech, len(lines))
	}

	// A wrong password blocks the whole output on authentication_failed.
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-512"} {
		o, bs := newOut(conn(mech, "wrong"))
		start := time.Now()
		err := o.Write(context.Background(), encode(o, []string{"never"}))
		var batch *output.BatchError
		if errors.As(err, &batch) && len(batch.Failed) == 1 {
			err = batch.Failed[0] // the record's own error
		}
		be, ok := delivery.AsBlocked(err)
		if !ok || be.Reason != "authentication_failed" || be.Key != "" {
			t.Fatalf("%s with a wrong password: Write = %v, want the output blocked on authentication_failed", mech, err)
		}
		if bl := bs.Blocks("bus"); len(bl) != 0 {
			t.Fatalf("%s with a wrong password: blocked as unreachable too: %+v", mech, bl)
		}
		t.Logf("%s with a wrong password: blocked after %v: %v", mech, time.Since(start).Round(time.Millisecond), err)
	}

	// A CA file that is not the broker's: the output is blocked on
	// tls_error (a configuration problem), not broker_unreachable.
	otherCert, _ := selfSigned(t)
	otherCA := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(otherCA, otherCert, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := conn("PLAIN", "alice-secret")
	bad.TLS = &kafkaconf.TLSConfig{CAFile: otherCA}
	o, bs := newOut(bad)
	err := o.Write(context.Background(), encode(o, []string{"never"}))
	if be, ok := delivery.AsBlocked(err); !ok || be.Reason != "tls_error" || be.Key != "" {
		t.Fatalf("with another CA: Write = %v, want the output blocked on tls_error", err)
	}
	if bl := bs.Blocks("bus"); len(bl) != 1 || bl[0].Reason != "tls_error" {
		t.Fatalf("with another CA: blocks = %+v", bl)
	}
	t.Logf("with another CA: %v", err)

	// The input with a wrong password emits nothing and says why (an
	// error log line naming the SASL failure), and stops when asked.
	ic := kafkain.NewConfig()
	ic.Conn = conn("SCRAM-SHA-256", "wrong")
	ic.Topics = []string{topic}
	ic.Group = topic + "-wrong"
	var logs syncbuf.Buffer
	in, err := kafkain.New(ic, input.Env{Name: "from-agents", Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{got: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, c.emit) }()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(logs.String(), "SASL_AUTHENTICATION_FAILED") {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("the input with a wrong password logged no SASL failure in a minute:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if len(c.got) != 0 {
		t.Fatalf("the input with a wrong password emitted %d records", len(c.got))
	}
	t.Logf("the input with a wrong password: %s", strings.SplitN(logs.String(), "\n", 2)[0])
}
