// Package testservers gives tests the real servers that scripts/servers
// starts (OpenSearch, Elasticsearch 7, Kafka): one of each per test run,
// shared by every package, so tests use names of their own (UniqueName).
//
// A server's address comes from its environment variable (set by
// scripts/test.sh), else from the state folder of scripts/servers/server.sh
// (SIDELOG_SERVERS_STATE, default ${TMPDIR:-/tmp}/sidelog-servers-$UID), so a
// developer can start a server once by hand and run `go test` on a package.
//
// When a server is missing the test fails if CI or SIDELOG_REQUIRE_SERVERS is
// set (as in .ci/run: a missing server must never pass as a skipped test),
// and is skipped otherwise, with the command that starts it.
package testservers

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Server names, as scripts/servers/server.sh knows them.
const (
	NameOpenSearch      = "opensearch"
	NameElasticsearch7  = "elasticsearch7"
	NameKafka           = "kafka"
	envOpenSearch       = "SIDELOG_OPENSEARCH_URL"
	envElasticsearch7   = "SIDELOG_ES7_URL"
	envKafka            = "SIDELOG_KAFKA_BROKERS"
	envState            = "SIDELOG_SERVERS_STATE"
	envRequire          = "SIDELOG_REQUIRE_SERVERS"
	startCommandPattern = "scripts/servers/server.sh start %s"
)

// OpenSearch returns the base URL of the shared OpenSearch 2.19 node
// ("http://127.0.0.1:PORT", no trailing slash).
func OpenSearch(t testing.TB) string {
	t.Helper()
	return strings.TrimRight(lookup(t, NameOpenSearch, envOpenSearch), "/")
}

// Elasticsearch7 returns the base URL of the shared Elasticsearch 7.17 node.
func Elasticsearch7(t testing.TB) string {
	t.Helper()
	return strings.TrimRight(lookup(t, NameElasticsearch7, envElasticsearch7), "/")
}

// Kafka returns the bootstrap brokers ("127.0.0.1:PORT") of the shared
// single-node KRaft Kafka broker.
func Kafka(t testing.TB) []string {
	t.Helper()
	v := lookup(t, NameKafka, envKafka)
	var brokers []string
	for _, b := range strings.Split(v, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	return brokers
}

// Required reports whether a missing server fails the test rather than
// skipping it: in CI (CI set, as .ci/run has it) or with
// SIDELOG_REQUIRE_SERVERS=1.
func Required() bool {
	for _, k := range []string{"CI", envRequire} {
		if v := os.Getenv(k); v != "" && v != "0" && v != "false" {
			return true
		}
	}
	return false
}

// Address returns a server's address without a test: from its environment
// variable, else from server.sh's state folder if the server's pid is alive.
// ok is false when neither has it.
func Address(name string) (addr string, ok bool) {
	if env := envOf(name); env != "" {
		if v := strings.TrimSpace(os.Getenv(env)); v != "" {
			return v, true
		}
	}
	dir := stateDir()
	url, err := os.ReadFile(filepath.Join(dir, name+".url"))
	if err != nil {
		return "", false
	}
	pid, err := os.ReadFile(filepath.Join(dir, name+".pid"))
	if err != nil || !alive(strings.TrimSpace(string(pid))) {
		return "", false
	}
	if v := strings.TrimSpace(string(url)); v != "" {
		return v, true
	}
	return "", false
}

// UniqueName returns a lower-case name, valid as an index, data stream or
// topic name, that no other test (of this or another package, in this or an
// earlier run against the same server) uses: prefix, the test's name and
// random hex.
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			sb.WriteRune(r)
		default:
			sb.WriteByte('-')
		}
	}
	name := strings.Trim(sb.String(), "-")
	if len(name) > 60 {
		name = name[:60]
	}
	return strings.ToLower(prefix) + "-" + name + "-" + hex.EncodeToString(b[:])
}

func lookup(t testing.TB, name, env string) string {
	t.Helper()
	if v, ok := Address(name); ok {
		return v
	}
	msg := fmt.Sprintf("%s is not running: start it with `%s` (or run the whole suite with `bash scripts/test.sh`), or set %s",
		name, fmt.Sprintf(startCommandPattern, name), env)
	if Required() {
		t.Fatalf("%s; CI is set, so a missing server fails the test", msg)
	}
	t.Skip(msg)
	return ""
}

func envOf(name string) string {
	switch name {
	case NameOpenSearch:
		return envOpenSearch
	case NameElasticsearch7:
		return envElasticsearch7
	case NameKafka:
		return envKafka
	}
	return ""
}

func stateDir() string {
	if d := os.Getenv(envState); d != "" {
		return d
	}
	tmp := os.Getenv("TMPDIR")
	if tmp == "" {
		tmp = "/tmp"
	}
	return filepath.Join(tmp, "sidelog-servers-"+strconv.Itoa(os.Getuid()))
}

func alive(pid string) bool {
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 {
		return false
	}
	return syscall.Kill(n, 0) == nil
}
