// Command sidelog is the log-collecting agent.
//
//	sidelog run [-c FILE] [--exit-on-eof]   run the agent (no -c: the embedded quickstart config)
//	sidelog validate -c FILE                check a config; exit 1 with every error listed
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
  run [-c FILE] [--exit-on-eof]   run the agent (without -c: the embedded quickstart config)
  validate -c FILE                check a config file; exit 1 listing every error
  test -c FILE TESTS.yaml         run rule tests (docs/testing-rules.md); exit 1 with a diff on mismatch
  tap --input NAME|--output NAME [--when EXPR] [--address ADDR]
                                  stream the records passing a point of a running agent (api.tap: true)
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

// loadConfig loads the config named by -c, or the embedded default.
func loadConfig(path string) (*config.Config, bool, error) {
	if path == "" {
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
	cfg, err := config.Load(path, plugins.Default)
	return cfg, false, err
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "sidelog validate: -c FILE is required")
		return 2
	}
	cfg, _, err := loadConfig(*cfgPath)
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
	fmt.Fprintf(stdout, "%s: OK (%d inputs, %d filters, %d outputs)\n", *cfgPath, len(cfg.Inputs), len(cfg.Filters), len(cfg.Outputs))
	return 0
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "config file (default: the embedded quickstart config)")
	exitOnEOF := fs.Bool("exit-on-eof", false, "read every file to its end, flush every output, exit 0")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file at exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, embedded, err := loadConfig(*cfgPath)
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
	log := newLogger(stderr, cfg.LogLevel)
	setMemoryLimit(log)

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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := runAgent(ctx, cfg, dd, *exitOnEOF, log)
	return code
}

// runAgent builds and runs the pipeline until ctx is done or the inputs
// finish (exit_on_eof). SIGHUP reloads the config file: the new config is
// loaded and built first; if it is invalid the old pipeline keeps running
// and the reason is logged; if it is valid the old pipeline is stopped
// gracefully (acknowledged records checkpointed, disk buffers kept) and the
// new one started on the same data_dir.
func runAgent(ctx context.Context, cfg *config.Config, dd *datadir.Dir, exitOnEOF bool, log *slog.Logger) int {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	a, err := newAgent(ctx, cfg, dd, exitOnEOF, log)
	if err != nil {
		log.Error("cannot start the API", "error", err.Error())
		return 1
	}
	defer a.close()
	agentOptions := a.options
	p, err := pipeline.Build(cfg, agentOptions(cfg, dd, exitOnEOF, log))
	if err != nil {
		log.Error("cannot build the pipeline", "error", err.Error())
		return 1
	}
	a.attach(cfg, p)
	log.Info("sidelog started", "version", version, "config", cfg.File, "inputs", len(cfg.Inputs), "outputs", len(cfg.Outputs))
	for {
		runCtx, stopRun := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(runCtx) }()
		var next *pipeline.Pipeline
		var nextCfg *config.Config
	wait:
		for {
			select {
			case err := <-done:
				stopRun()
				if err != nil && !errors.Is(err, context.Canceled) {
					log.Error("pipeline stopped with errors", "error", err.Error())
					return 1
				}
				log.Info("sidelog stopped")
				return 0
			case <-hup:
				nextCfg, next = reload(cfg, dd, exitOnEOF, log, agentOptions)
				if next != nil {
					break wait
				}
				a.metrics.Reloaded(false)
			}
		}
		// The new pipeline was built once to check it; it is built again
		// after the old one has stopped, so that its inputs start from the
		// checkpoints the old one persisted while stopping.
		next.Close()
		stopRun()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			log.Error("the old pipeline stopped with errors", "error", err.Error())
		}
		if np, err := pipeline.Build(nextCfg, agentOptions(nextCfg, dd, exitOnEOF, log)); err == nil {
			cfg, p = nextCfg, np
			a.attach(cfg, p)
			a.metrics.Reloaded(true)
			log.Info("config reloaded", "config", cfg.File, "inputs", len(cfg.Inputs), "outputs", len(cfg.Outputs))
		} else if op, oerr := pipeline.Build(cfg, agentOptions(cfg, dd, exitOnEOF, log)); oerr == nil {
			p = op
			log.Error("config reload failed at start, the old config runs again", "error", err.Error())
		} else {
			log.Error("config reload failed and the old config cannot be restarted", "error", err.Error(), "old_error", oerr.Error())
			return 1
		}
	}
}

// reload loads and builds the config file again; nil when it cannot be used.
func reload(old *config.Config, dd *datadir.Dir, exitOnEOF bool, log *slog.Logger, agentOptions func(*config.Config, *datadir.Dir, bool, *slog.Logger) pipeline.Options) (*config.Config, *pipeline.Pipeline) {
	if strings.HasPrefix(old.File, "<") {
		log.Warn("SIGHUP ignored: the embedded config cannot be reloaded")
		return nil, nil
	}
	cfg, err := config.Load(old.File, plugins.Default)
	if err != nil {
		log.Error("config reload refused, the old config keeps running", "error", err.Error())
		return nil, nil
	}
	if cfg.DataDir != old.DataDir {
		log.Error("config reload refused, the old config keeps running: data_dir cannot change without a restart", "data_dir", cfg.DataDir)
		return nil, nil
	}
	p, err := pipeline.Build(cfg, agentOptions(cfg, dd, exitOnEOF, log))
	if err != nil {
		log.Error("config reload refused, the old config keeps running", "error", err.Error())
		return nil, nil
	}
	return cfg, p
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
