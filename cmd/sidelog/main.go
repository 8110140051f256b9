// Command sidelog is the log-collecting agent.
//
//	sidelog run [-c FILE|DIR]... [--exit-on-eof] [--watch-config]   run the agent (no -c: the embedded quickstart config)
//	sidelog validate -c FILE|DIR...         check a config; exit 1 with every error listed
//	sidelog version                         print the version
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/datadir"
	"github.com/sidelog/sidelog/internal/gctune"
	"github.com/sidelog/sidelog/pipeline"
	"github.com/sidelog/sidelog/plugins"
	_ "github.com/sidelog/sidelog/plugins/all"
	"github.com/sidelog/sidelog/testrunner"
)

//go:embed default.yaml
var defaultConfig []byte

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: sidelog <command> [flags]

commands:
  run [-c FILE|DIR]... [--exit-on-eof] [--watch-config]
                                  run the agent (without -c: the embedded quickstart config);
                                  -c again, or a directory: files merged in order (docs/configuration.md);
                                  --watch-config reloads when a config file changes
  reload [--address ADDR|--socket PATH] [--token-file FILE]
                                  reload a running agent's config (POST /-/reload on api.admin)
  validate -c FILE|DIR...         check a config; exit 1 listing every error
  test -c FILE TESTS.yaml         run rule tests (docs/testing-rules.md); exit 1 with a diff on mismatch
  tap --input NAME|--output NAME [--when EXPR] [--address ADDR|--socket PATH] [--token-file FILE]
                                  stream the records passing a point of a running agent
                                  (api.tap: true, on the admin listener api.admin)
  buffer verify|stats|drop        inspect or remove disk buffers (sidelog buffer for details)
  dead-letter replay -c FILE --output NAME
                                  send an output's dead-lettered records again
  version                         print the version, commit and build date
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(args, stdout, stderr)
	case "validate":
		return cmdValidate(args, stdout, stderr)
	case "test":
		return testrunner.Main(args, stdout, stderr, plugins.Default)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionLine())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	if h, ok := extraCommands[cmd]; ok {
		return h(args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "sidelog: unknown command %q\n%s", cmd, usage)
	return 2
}

// extraCommands are the commands added by other files of this package.
var extraCommands = map[string]func(args []string, stdout, stderr io.Writer) int{}

// configFlag is -c: a config file or a directory of them, given once or
// more (merged in order: config/files.go).
type configFlag []string

func (c *configFlag) String() string { return strings.Join(*c, ", ") }
func (c *configFlag) Set(v string) error {
	if v == "" {
		return errors.New("empty path")
	}
	*c = append(*c, v)
	return nil
}

// loadConfig loads the config named by -c, or the embedded default.
func loadConfig(paths []string) (*config.Config, bool, error) {
	if len(paths) == 0 {
		dir, err := filepath.Abs(filepath.Join("testdata", "quickstart"))
		if err == nil {
			_, err = os.Stat(dir)
		}
		if err != nil {
			return nil, true, fmt.Errorf("the embedded quickstart config reads testdata/quickstart: run sidelog from the repository root, or give a config with -c (%v)", err)
		}
		os.Setenv("SIDELOG_QUICKSTART", dir)
		cfg, err := config.Parse("<embedded default config>", defaultConfig, plugins.Default)
		return cfg, true, err
	}
	cfg, err := config.LoadFiles(paths, plugins.Default)
	return cfg, false, err
}

func newLogger(w io.Writer, level string) *slog.Logger {
	l, _ := newLevelLogger(w, level)
	return l
}

// newLevelLogger is newLogger with its level variable, which a reload sets.
func newLevelLogger(w io.Writer, level string) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	lv.Set(l)
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})), lv
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfgPath configFlag
	fs.Var(&cfgPath, "c", "config file or directory (repeatable: merged in order)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(cfgPath) == 0 {
		fmt.Fprintln(stderr, "sidelog validate: -c FILE is required")
		return 2
	}
	cfg, _, err := loadConfig(cfgPath)
	if err == nil {
		// Build every plugin (nothing starts) so that errors found only
		// when a plugin is built are reported too.
		var p *pipeline.Pipeline
		p, err = pipeline.Build(cfg, pipeline.Options{Logger: slog.New(slog.DiscardHandler)})
		if p != nil {
			p.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK (%d inputs, %d filters, %d outputs)\n", cfgPath.String(), len(cfg.Inputs), len(cfg.Filters), len(cfg.Outputs))
	return 0
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfgPath configFlag
	fs.Var(&cfgPath, "c", "config file or directory, repeatable: merged in order (default: the embedded quickstart config)")
	exitOnEOF := fs.Bool("exit-on-eof", false, "read every file to its end, flush every output, exit 0")
	watch := fs.Bool("watch-config", false, "reload when the config file changes (a mounted ConfigMap's symlink swap included)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file at exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, embedded, err := loadConfig(cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if embedded {
		dir, err := os.MkdirTemp("", "sidelog-quickstart-")
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	log, level := newLevelLogger(stderr, cfg.LogLevel)
	setMemoryLimit(log)
	tuneGC(log)

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if *memProfile != "" {
		defer func() {
			f, err := os.Create(*memProfile)
			if err == nil {
				runtime.GC()
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}()
	}

	dd, err := datadir.Open(cfg.DataDir)
	if err != nil {
		log.Error("cannot open data_dir", "error", err.Error())
		fmt.Fprintln(stderr, "sidelog:", err)
		return 1
	}
	defer dd.Close()
	if dd.Warning != "" {
		log.Warn(dd.Warning)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := runAgent(ctx, cfg, dd, runFlags{exitOnEOF: *exitOnEOF, watch: *watch, level: level}, log)
	return code
}

// tuneGC keeps the collector's headroom at half the live heap (at least
// gctune.MinHeadroom, at most Go's default) unless the user set GOGC.
func tuneGC(log *slog.Logger) {
	if os.Getenv("GOGC") != "" {
		return
	}
	gctune.Start(func(percent int, live uint64) {
		log.Debug("GOGC set from the live heap", "gogc", percent, "live_bytes", live)
	})
}

// setMemoryLimit sets GOMEMLIMIT to 90% of the cgroup memory limit when the
// user has not set it, so the GC works harder before the OOM killer acts.
func setMemoryLimit(log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit, ok := cgroupMemoryLimit()
	if !ok {
		return
	}
	debug.SetMemoryLimit(limit / 10 * 9)
	log.Debug("GOMEMLIMIT set from the cgroup memory limit", "limit_bytes", limit/10*9)
}
