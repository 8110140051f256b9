package testservers

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// KafkaBroker is a Kafka broker of one test's own, for a test that stops
// and restarts a broker: the shared one (Kafka) must never be, as other
// packages' tests use it at the same time. It is the launcher of
// scripts/servers/kafka (single-node KRaft, the same settings), with its
// home and data in the test's temporary folder; Start after Stop brings it
// back on the same port with the same data, as a restarted broker comes
// back. It costs the test a JVM start (5-25 s on a loaded 2-core machine,
// docs/testing.md) and about 350 MB.
type KafkaBroker struct {
	t        testing.TB
	java     string
	args     []string
	home     string
	portFile string
	logPath  string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has exited
	addr     string
	internal string // the plaintext listener of a secured broker
}

// KafkaSecurity makes a private broker's client listener (Brokers) a
// secured one; a second, plaintext listener (Internal) serves the test's
// admin calls.
type KafkaSecurity struct {
	// Protocol is SASL_PLAINTEXT, SSL or SASL_SSL.
	Protocol string
	// Users are the SASL users (name → password), for PLAIN,
	// SCRAM-SHA-256 and SCRAM-SHA-512 alike.
	Users map[string]string
	// CertPEM and KeyPEM are the broker's certificate chain and its
	// unencrypted PKCS#8 key (SSL, SASL_SSL).
	CertPEM, KeyPEM []byte
}

// StartKafka starts a private broker and returns once it answers. When
// Java or the launcher is missing (or the launcher cannot be prepared) the
// test fails in CI (Required) and is skipped otherwise. The broker is
// killed at the test's end.
func StartKafka(t testing.TB) *KafkaBroker {
	t.Helper()
	return startKafka(t, nil)
}

// StartKafkaSecured is StartKafka with a secured client listener.
func StartKafkaSecured(t testing.TB, sec KafkaSecurity) *KafkaBroker {
	t.Helper()
	return startKafka(t, &sec)
}

// clientProperties is the launcher's client.properties for sec.
func clientProperties(sec *KafkaSecurity) string {
	var sb strings.Builder
	// Properties syntax: a value's backslashes and line ends escaped.
	esc := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", "")
	prop := func(k, v string) { sb.WriteString(k + "=" + esc.Replace(v) + "\n") }
	prop("sidelog.protocol", sec.Protocol)
	if strings.HasPrefix(sec.Protocol, "SASL_") {
		prop("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512")
		names := make([]string, 0, len(sec.Users))
		for n := range sec.Users {
			names = append(names, n)
		}
		sort.Strings(names)
		plain := "org.apache.kafka.common.security.plain.PlainLoginModule required"
		var scram []string
		for _, n := range names {
			plain += fmt.Sprintf(" user_%s=%q", n, sec.Users[n])
			for _, m := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
				scram = append(scram, fmt.Sprintf("%s=[name=%s,password=%s]", m, n, sec.Users[n]))
			}
		}
		prop("listener.name.client.plain.sasl.jaas.config", plain+";")
		for _, m := range []string{"scram-sha-256", "scram-sha-512"} {
			prop("listener.name.client."+m+".sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required;")
		}
		prop("sidelog.scram", strings.Join(scram, ";"))
	}
	if strings.HasSuffix(sec.Protocol, "SSL") {
		prop("listener.name.client.ssl.keystore.type", "PEM")
		prop("listener.name.client.ssl.keystore.certificate.chain", string(sec.CertPEM))
		prop("listener.name.client.ssl.keystore.key", string(sec.KeyPEM))
	}
	return sb.String()
}

func startKafka(t testing.TB, sec *KafkaSecurity) *KafkaBroker {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		missing(t, err.Error())
	}
	java := "java"
	if jh := os.Getenv("JAVA_HOME"); jh != "" {
		java = filepath.Join(jh, "bin", "java")
	}
	if _, err := exec.LookPath(java); err != nil {
		missing(t, fmt.Sprintf("java not found (%v): a private Kafka broker needs a JDK 17 or newer", err))
	}
	// server.sh prepare resolves the jars and compiles the launcher unless
	// its cache is up to date (then it returns at once).
	var out bytes.Buffer
	prep := exec.Command("bash", filepath.Join(root, "scripts", "servers", "server.sh"), "prepare", NameKafka)
	prep.Stdout, prep.Stderr = &out, &out
	if err := prep.Run(); err != nil {
		missing(t, fmt.Sprintf("scripts/servers/server.sh prepare kafka: %v: %s", err, strings.TrimSpace(out.String())))
	}
	cache := filepath.Join(cacheDir(), NameKafka)
	home := filepath.Join(t.TempDir(), "kafka")
	if err := os.MkdirAll(filepath.Join(home, "home"), 0o755); err != nil {
		t.Fatal(err)
	}
	if sec != nil {
		if err := os.WriteFile(filepath.Join(home, "home", "client.properties"), []byte(clientProperties(sec)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := &KafkaBroker{
		t:    t,
		java: java,
		args: []string{
			"-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:-UsePerfData",
			// C1 only: a short-lived broker starts in about two thirds
			// of the time (measured: 6.3 s instead of 8.7 s).
			"-XX:TieredStopAtLevel=1",
			"-Djava.io.tmpdir=" + filepath.Join(home, "home"),
			"-Djava.awt.headless=true", "-Dfile.encoding=UTF-8",
			"-Dlog4j2.configurationFile=" + filepath.Join(root, "scripts", "servers", "kafka", "log4j2.yaml"),
			"-cp", filepath.Join(cache, "lib", "*") + string(os.PathListSeparator) + filepath.Join(cache, "classes"),
			"Launch", filepath.Join(home, "home"), filepath.Join(home, "port"),
		},
		home:     home,
		portFile: filepath.Join(home, "port"),
		logPath:  filepath.Join(home, "kafka.log"),
	}
	t.Cleanup(func() {
		b.mu.Lock()
		cmd, done := b.cmd, b.done
		b.mu.Unlock()
		if cmd != nil {
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("private kafka broker's log (%s):\n%s", b.logPath, b.LogTail(40))
		}
	})
	b.Start()
	return b
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s; CI is set, so a missing private Kafka broker fails the test", msg)
	}
	t.Skip(msg)
}

// Brokers returns the broker's address ("127.0.0.1:PORT"), the same
// after a restart.
func (b *KafkaBroker) Brokers() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return []string{b.addr}
}

// Internal returns the plaintext listener's address: the client listener
// (Brokers) of a broker without KafkaSecurity, a listener of its own on a
// secured one, for the test's admin calls (kafkatest).
func (b *KafkaBroker) Internal() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.internal != "" {
		return []string{b.internal}
	}
	return []string{b.addr}
}

// PID returns the broker process's id (0 when stopped).
func (b *KafkaBroker) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// Start starts the broker (again, after Stop: same port, same data) and
// returns once an admin client sees it. It fails the test if the broker
// is not ready within 3 minutes or exits while starting.
func (b *KafkaBroker) Start() {
	b.t.Helper()
	b.mu.Lock()
	if b.cmd != nil {
		b.mu.Unlock()
		b.t.Fatal("private kafka broker: Start while it runs")
	}
	os.Remove(b.portFile)
	logf, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.mu.Unlock()
		b.t.Fatal(err)
	}
	cmd := exec.Command(b.java, b.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		b.mu.Unlock()
		missing(b.t, fmt.Sprintf("private kafka broker: %v", err))
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	b.cmd, b.done = cmd, done
	b.mu.Unlock()

	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	for {
		if p, err := os.ReadFile(b.portFile); err == nil && len(bytes.TrimSpace(p)) > 0 {
			addr := "127.0.0.1:" + string(bytes.TrimSpace(p))
			b.mu.Lock()
			if b.addr != "" && b.addr != addr {
				b.mu.Unlock()
				b.t.Fatalf("private kafka broker came back on %s, not %s", addr, b.addr)
			}
			b.addr = addr
			if ip, err := os.ReadFile(b.portFile + ".internal"); err == nil {
				b.internal = "127.0.0.1:" + string(bytes.TrimSpace(ip))
			}
			b.mu.Unlock()
			b.t.Logf("private kafka broker (pid %d) ready at %s after %v", cmd.Process.Pid, addr, time.Since(start).Round(10*time.Millisecond))
			return
		}
		select {
		case <-done:
			b.mu.Lock()
			b.cmd, b.done = nil, nil
			b.mu.Unlock()
			b.t.Fatalf("private kafka broker exited while starting:\n%s", b.LogTail(40))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("private kafka broker not ready after 3 minutes:\n%s", b.LogTail(40))
		}
	}
}

// Stop sends sig to the broker (SIGTERM: a clean shutdown; SIGKILL: a
// crash) and returns once its process has exited (SIGKILL after 60 s).
func (b *KafkaBroker) Stop(sig syscall.Signal) {
	b.t.Helper()
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.cmd, b.done = nil, nil
	b.mu.Unlock()
	if cmd == nil {
		b.t.Fatal("private kafka broker: Stop while it is stopped")
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		b.t.Fatalf("private kafka broker: %v", err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		b.t.Logf("private kafka broker ignored %v for 60 s: SIGKILL", sig)
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// LogTail returns the last n lines of the broker's log.
func (b *KafkaBroker) LogTail(n int) string {
	raw, _ := os.ReadFile(b.logPath)
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// repoRoot is the folder holding scripts/servers/server.sh, found upwards
// from the working directory (a package's folder under go test).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "servers", "server.sh")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("scripts/servers/server.sh not found above the working directory")
		}
		dir = up
	}
}

// cacheDir is server.sh's cache of resolved jars and compiled launchers.
func cacheDir() string {
	if d := os.Getenv("SIDELOG_SERVERS_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "sidelog-servers")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "sidelog-servers")
}
