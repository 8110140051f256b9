package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidelog/sidelog/config/units"
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/plugins"
)

type tailCfg struct {
	Paths        []string      `yaml:"paths"`
	PollInterval time.Duration `yaml:"poll_interval"`
	MaxLineBytes units.Size    `yaml:"max_line_bytes"`
	ExitOnEOF    bool          `yaml:"exit_on_eof"`
}

type esCfg struct {
	Endpoints []string `yaml:"endpoints"`
	Password  string   `yaml:"password"`
	Index     string   `yaml:"index"`
}

func (c *esCfg) Validate() error {
	if len(c.Endpoints) == 0 {
		return &plugins.KeyError{Key: "endpoints", Err: errString("at least one endpoint is required")}
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }

type nopOut struct{}

func (nopOut) Encode(d []byte, _ *event.Event) ([]byte, error) { return d, nil }
func (nopOut) Write(context.Context, [][]byte) error           { return nil }
func (nopOut) Close(context.Context) error                     { return nil }

func testRegistry() *plugins.Registry {
	r := plugins.New()
	r.AddInput("tail", plugins.Input{Config: func() any { return &tailCfg{PollInterval: time.Second} },
		New: func(any, input.Env) (input.Input, error) { return nil, nil }})
	r.AddParser("json", plugins.Parser{New: func(parser.Config, plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
		return nil, nil, nil
	}})
	r.AddOutput("elasticsearch", plugins.Output{Config: func() any { return &esCfg{} },
		New: func(any, plugins.OutputEnv) (output.Output, error) { return nopOut{}, nil }})
	r.AddOutput("stdout", plugins.Output{Config: func() any {
		return &struct {
			Format string `yaml:"format"`
		}{}
	}, New: func(any, plugins.OutputEnv) (output.Output, error) { return nopOut{}, nil }})
	return r
}

func TestLoadGood(t *testing.T) {
	t.Setenv("ES_PASSWORD", "s3cret")
	secret := filepath.Join(t.TempDir(), "key")
	os.WriteFile(secret, []byte("  from-file\n"), 0o600)
	cfg, err := Parse("sidelog.yaml", []byte(`
data_dir: /tmp/x
inputs:
  - name: app
    type: tail
    paths: ["/var/log/app/*.log"]
    poll_interval: 250ms
    max_line_bytes: 1MiB
    parser: json
    multiline: {preset: java, timeout: 1s}
    fields: {service: checkout}
outputs:
  - name: es
    type: elasticsearch
    route: 'level in ["warn", "error"]'
    endpoints: ["http://127.0.0.1:9200"]
    password: ${ES_PASSWORD}
    index: ${file:`+secret+`}
    buffer: {type: disk, max_bytes: 1GiB}
    batch: {max_events: 500, max_bytes: 5MB}
`), testRegistry())
	if err != nil {
		t.Fatal(err)
	}
	in := cfg.Inputs[0]
	tc := in.Plugin.(*tailCfg)
	if tc.PollInterval != 250*time.Millisecond || tc.MaxLineBytes != 1<<20 || tc.Paths[0] != "/var/log/app/*.log" {
		t.Fatalf("tail config %+v", tc)
	}
	if in.Parser.Parser != "json" || in.Parser.Multiline.Preset != "java" || in.Parser.Multiline.Timeout != time.Second || in.Parser.Fields["service"] != "checkout" {
		t.Fatalf("parser config %+v", in.Parser)
	}
	o := cfg.Outputs[0]
	es := o.Plugin.(*esCfg)
	if es.Password != "s3cret" || es.Index != "from-file" {
		t.Fatalf("substitution: %+v", es)
	}
	if o.Buffer.MaxBytes != 1<<30 || o.Batch.MaxBytes != 5_000_000 || o.Batch.MaxEvents != 500 || o.Batch.Timeout != time.Second {
		t.Fatalf("output blocks: %+v %+v", o.Buffer, o.Batch)
	}
	if o.RouteProgram == nil {
		t.Fatal("route not compiled")
	}
	if cfg.ShutdownTimeout != 25*time.Second || cfg.API.Address != "127.0.0.1:2020" {
		t.Fatalf("defaults: %+v", cfg)
	}
}

// Every error is reported at once, each with file:line and the key path,
// and no substituted secret appears.
func TestLoadReportsEveryError(t *testing.T) {
	t.Setenv("ES_PASSWORD", "hunter2-secret")
	os.Unsetenv("MISSING_VAR")
	_, err := Parse("sidelog.yaml", []byte(`data_dir: /tmp/x
inputs:
  - name: app
    type: tail
    paths: ["/x/*.log"]
    pol_interval: 1s
filters: []
outputs:
  - name: es
    type: elasticsearch
    route: 'level =='
    endpoints: ["${MISSING_VAR}"]
    password: ${ES_PASSWORD}
    batch: {max_bytes: "5MB?"}
  - name: out
    type: stdout
    buffer: {when_full: explode}
    retry: {initial: soon}
`), testRegistry())
	if err == nil {
		t.Fatal("no error")
	}
	got := err.Error()
	for _, want := range []string{
		`sidelog.yaml:6: inputs[0].pol_interval: unknown key (did you mean "poll_interval"?)`,
		`sidelog.yaml:11: outputs[0].route: line 1, column `,
		`sidelog.yaml:12: outputs[0].endpoints[0]: ${MISSING_VAR}: environment variable is not set`,
		`sidelog.yaml:14: outputs[0].batch.max_bytes: invalid size "5MB?"`,
		`sidelog.yaml:17: outputs[1].buffer.when_full: must be block or drop_newest, not "explode"`,
		`sidelog.yaml:18: outputs[1].retry.initial: invalid duration "soon"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing error %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "hunter2") {
		t.Errorf("secret leaked:\n%s", got)
	}
}

func TestLoadTypeErrors(t *testing.T) {
	_, err := Parse("c.yaml", []byte(`inputs:
  - name: app
    type: tail
    paths: /not/a/list
    exit_on_eof: yes please
  - name: app
    type: nope
outputs:
  - {name: "bad name", type: stdout}
`), testRegistry())
	got := err.Error()
	for _, want := range []string{
		`c.yaml:4: inputs[0].paths: expected a list, got the scalar "/not/a/list"`,
		`c.yaml:5: inputs[0].exit_on_eof: expected true or false`,
		`c.yaml:6: inputs[1].name: duplicate input name "app"`,
		`c.yaml:7: inputs[1].type: unknown input type "nope" (known: tail)`,
		`c.yaml:9: outputs[0].name: "bad name": use letters`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing error %q in:\n%s", want, got)
		}
	}
}

func TestPluginValidateNamesKey(t *testing.T) {
	_, err := Parse("c.yaml", []byte(`inputs:
  - {name: app, type: tail}
outputs:
  - name: es
    type: elasticsearch
    index: x
`), testRegistry())
	if err == nil || !strings.Contains(err.Error(), "c.yaml:4: outputs[0].endpoints: at least one endpoint is required") {
		t.Fatalf("got %v", err)
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]units.Size{"5MiB": 5 << 20, "5MB": 5e6, "1024": 1024, "1.5KiB": 1536, "2GiB": 2 << 30, "10 KB": 10e3} {
		got, err := units.ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "5MB?", "-1", "MiB", "1XB"} {
		if _, err := units.ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

// No error message shows a substituted value: plugin messages that quote a
// value, type errors, and errors found when plugins are built.
func TestErrorsNeverShowSubstitutedValues(t *testing.T) {
	t.Setenv("SECRET_URL", "https://elastic:hunter2-pw@es.internal:9200")
	t.Setenv("SECRET_NUM", "s3cr3t-token-value")
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("file-secret-42\n"), 0o600)
	_, err := Parse("c.yaml", []byte(`inputs:
  - name: app
    type: tail
    poll_interval: ${SECRET_NUM}
    max_line_bytes: ${file:`+keyFile+`}
outputs:
  - name: es
    type: elasticsearch
    endpoints: []
    password: ${SECRET_URL}
    index: ${SECRET_URL}
  - name: x
    type: stdout
    format: ${SECRET_NUM}
`), testRegistry())
	if err == nil {
		t.Fatal("no error")
	}
	got := err.Error()
	for _, secret := range []string{"hunter2", "s3cr3t", "file-secret"} {
		if strings.Contains(got, secret) {
			t.Fatalf("secret %q in:\n%s", secret, got)
		}
	}
	if !strings.Contains(got, "${SECRET_NUM}") {
		t.Fatalf("the reference should be named instead:\n%s", got)
	}
}

// Issue 20 (config strictness): duplicate keys in map-typed keys, input
// names that would share a checkpoint file, api.address, a misspelt type.
func TestStrictness(t *testing.T) {
	_, err := Parse("sidelog.yaml", []byte(`
api: {address: "127.0.0.1"}
inputs:
  - name: a/b
    type: tail
    paths: ["/x"]
    fields: {service: a, service: b}
  - name: c
    type: tial
outputs:
  - {name: out, type: stdout}
`), testRegistry())
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`sidelog.yaml:2: api.address: "127.0.0.1" is not host:port`,
		`sidelog.yaml:4: inputs[0].name: "a/b": use letters, digits, '-' and '_' (it names the checkpoint file)`,
		`sidelog.yaml:7: inputs[0].fields.service: duplicate key`,
		`sidelog.yaml:9: inputs[1].type: unknown input type "tial" (did you mean "tail"?)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}

// ${VAR:-default}: the default when VAR is unset or empty.
func TestSubstituteDefault(t *testing.T) {
	t.Setenv("SIDELOG_EMPTY", "")
	t.Setenv("SIDELOG_SET", "/from/env")
	os.Unsetenv("SIDELOG_UNSET_X")
	cfg, err := Parse("sidelog.yaml", []byte(`
data_dir: ${SIDELOG_UNSET_X:-/var/lib/def}
inputs:
  - name: app
    type: tail
    paths: ["${SIDELOG_EMPTY:-/e}", "${SIDELOG_SET:-/no}", "${SIDELOG_UNSET_X:-}x"]
outputs:
  - {name: out, type: stdout}
`), testRegistry())
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Inputs[0].Plugin.(*tailCfg).Paths
	if cfg.DataDir != "/var/lib/def" || strings.Join(got, ",") != "/e,/from/env,x" {
		t.Fatalf("data_dir %q, paths %q", cfg.DataDir, got)
	}
}

// dead_letter.when_full: block by default; a bad value names its line.
func TestDeadLetterWhenFull(t *testing.T) {
	src := "inputs:\n  - {name: app, type: tail, paths: [\"/x/*.log\"]}\noutputs:\n  - {name: out, type: stdout}\n"
	cfg, err := Parse("s.yaml", []byte(src), testRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DeadLetter.WhenFull != "block" {
		t.Fatalf("default when_full %q, want block", cfg.DeadLetter.WhenFull)
	}
	cfg, err = Parse("s.yaml", []byte("dead_letter:\n  when_full: drop_oldest\n"+src), testRegistry())
	if err != nil || cfg.DeadLetter.WhenFull != "drop_oldest" {
		t.Fatalf("drop_oldest: %v %+v", err, cfg)
	}
	_, err = Parse("s.yaml", []byte("dead_letter:\n  max_bytes: 1MiB\n  when_full: evict\n"+src), testRegistry())
	want := `s.yaml:3: dead_letter.when_full: must be block or drop_oldest, not "evict"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
}
