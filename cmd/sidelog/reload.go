package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sidelog/sidelog/api"
	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/datadir"
	"github.com/sidelog/sidelog/pipeline"
	"github.com/sidelog/sidelog/plugins"
)

func init() { extraCommands["reload"] = api.ReloadCommand }

// runFlags are `sidelog run`'s flags that runAgent needs.
type runFlags struct {
	exitOnEOF bool
	watch     bool           // --watch-config
	level     *slog.LevelVar // the agent's log level, set again on reload
}

// reloadKeys says what a reload does with each top-level config key: every
// key is applied or refused with a log line, none is ignored silently
// (a test checks that every key of config.Config is listed).
var reloadKeys = map[string]string{
	"data_dir":         "refused: data_dir cannot change without a restart",
	"log_level":        "applied: the agent's log level",
	"api":              "applied: listeners rebound (a bind error refuses the reload), api.tap, api.pprof and the token file switched",
	"shutdown_timeout": "applied: by the new pipeline",
	"dead_letter":      "applied: by the new pipeline",
	"metrics":          "applied: per_file_lag switches at once",
	"parsers":          "applied: by the new pipeline",
	"inputs":           "applied: by the new pipeline (from the checkpoints)",
	"filters":          "applied: by the new pipeline",
	"outputs":          "applied: by the new pipeline (disk buffers kept)",
}

// reloadRequest asks runAgent to reload; done (if not nil) receives nil
// once the new config runs, or why it was refused.
type reloadRequest struct {
	source string // SIGHUP, POST /-/reload, --watch-config
	done   chan error
}

func (r reloadRequest) reply(err error) {
	if r.done != nil {
		r.done <- err
	}
}

// apiOptions are the config-bound API options.
func apiOptions(cfg *config.Config) api.Options {
	return api.Options{
		Address: cfg.API.Address,
		Tap:     cfg.API.Tap,
		Pprof:   cfg.API.Pprof,
		Admin:   api.Admin{Address: cfg.API.Admin.Address, Socket: cfg.API.Admin.Socket, TokenFile: cfg.API.Admin.TokenFile},
	}
}

// runAgent builds and runs the pipeline until ctx is done or the inputs
// finish (exit_on_eof). SIGHUP, POST /-/reload on the admin listener and
// (with --watch-config) a change of the config file reload it: the new
// config is loaded and built first; if it is invalid, or a key that cannot
// change (data_dir) changed, or its API addresses cannot be bound, the old
// config keeps running and the reason is logged (and returned to the POST);
// if it is valid the API and log level are switched, the old pipeline is
// stopped gracefully (acknowledged records checkpointed, disk buffers kept)
// and the new one started on the same data_dir.
func runAgent(ctx context.Context, cfg *config.Config, dd *datadir.Dir, rf runFlags, log *slog.Logger) int {
	exitOnEOF := rf.exitOnEOF
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reqs := make(chan reloadRequest)
	requestReload := func(rctx context.Context, source string) error {
		r := reloadRequest{source: source, done: make(chan error, 1)}
		select {
		case reqs <- r:
		case <-rctx.Done():
			return rctx.Err()
		case <-ctx.Done():
			return errors.New("the agent is stopping")
		}
		select {
		case err := <-r.done:
			return err
		case <-rctx.Done():
			return rctx.Err()
		}
	}

	a, err := newAgent(ctx, cfg, dd, exitOnEOF, log, func(rctx context.Context) error {
		return requestReload(rctx, "POST /-/reload")
	})
	if err != nil {
		log.Error("cannot start the API", "error", err.Error())
		return 1
	}
	defer a.close()
	if rf.watch {
		if strings.HasPrefix(cfg.File, "<") {
			log.Warn("--watch-config ignored: the embedded config cannot be reloaded")
		} else {
			watchCtx, stopWatch := context.WithCancel(ctx)
			defer stopWatch()
			go watchConfig(watchCtx, cfg.Paths, log, func() {
				go func() {
					if err := requestReload(watchCtx, "--watch-config"); err != nil && watchCtx.Err() == nil {
						log.Debug("reload after a config change refused", "error", err.Error())
					}
				}()
			})
		}
	}
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
		var req reloadRequest
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
				req = reloadRequest{source: "SIGHUP"}
			case req = <-reqs:
			}
			var rerr error
			nextCfg, next, rerr = reload(cfg, dd, exitOnEOF, log, agentOptions, req.source)
			if next != nil {
				rerr = applyAgentKeys(ctx, a, cfg, nextCfg, rf.level, log)
				if rerr != nil {
					next.Close()
					next = nil
				}
			}
			if next != nil {
				break wait
			}
			a.metrics.Reloaded(false)
			req.reply(rerr)
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
			log.Info("config reloaded", "config", cfg.File, "by", req.source, "inputs", len(cfg.Inputs), "outputs", len(cfg.Outputs))
			req.reply(nil)
		} else if op, oerr := pipeline.Build(cfg, agentOptions(cfg, dd, exitOnEOF, log)); oerr == nil {
			p = op
			log.Error("config reload failed at start, the old config runs again", "error", err.Error())
			req.reply(err)
		} else {
			log.Error("config reload failed and the old config cannot be restarted", "error", err.Error(), "old_error", oerr.Error())
			req.reply(err)
			return 1
		}
	}
}

// applyAgentKeys applies the keys that live outside the pipeline: api (the
// listeners are rebound first; an error refuses the reload) and log_level.
func applyAgentKeys(ctx context.Context, a *agent, old, cfg *config.Config, level *slog.LevelVar, log *slog.Logger) error {
	if old.API != cfg.API {
		if err := a.api.Reconfigure(ctx, apiOptions(cfg)); err != nil {
			log.Error("config reload refused, the old config keeps running: the new api block cannot be applied", "error", err.Error())
			return fmt.Errorf("api: %w", err)
		}
		warnAdminOff(cfg, log)
		log.Info("api reconfigured on reload", "address", a.api.Addr(), "admin", a.api.AdminAddr(), "tap", cfg.API.Tap, "pprof", cfg.API.Pprof)
	}
	if old.LogLevel != cfg.LogLevel && level != nil {
		var l slog.Level
		_ = l.UnmarshalText([]byte(cfg.LogLevel))
		level.Set(l)
		log.Info("log_level applied on reload", "log_level", cfg.LogLevel)
		log.Debug("debug logging on")
	}
	return nil
}

// reload loads and builds the config file again; nil and the reason when
// it cannot be used.
func reload(old *config.Config, dd *datadir.Dir, exitOnEOF bool, log *slog.Logger, agentOptions func(*config.Config, *datadir.Dir, bool, *slog.Logger) pipeline.Options, source string) (*config.Config, *pipeline.Pipeline, error) {
	if strings.HasPrefix(old.File, "<") {
		log.Warn("reload ignored: the embedded config cannot be reloaded", "by", source)
		return nil, nil, errors.New("the embedded config cannot be reloaded")
	}
	cfg, err := config.LoadFiles(old.Paths, plugins.Default)
	if err != nil {
		log.Error("config reload refused, the old config keeps running", "by", source, "error", err.Error())
		return nil, nil, err
	}
	if cfg.DataDir != old.DataDir {
		log.Error("config reload refused, the old config keeps running: data_dir cannot change without a restart", "by", source, "data_dir", cfg.DataDir)
		return nil, nil, fmt.Errorf("data_dir cannot change without a restart (%s -> %s)", old.DataDir, cfg.DataDir)
	}
	p, err := pipeline.Build(cfg, agentOptions(cfg, dd, exitOnEOF, log))
	if err != nil {
		log.Error("config reload refused, the old config keeps running", "by", source, "error", err.Error())
		return nil, nil, err
	}
	return cfg, p, nil
}

// warnAdminOff says that api.tap/api.pprof do nothing without api.admin.
func warnAdminOff(cfg *config.Config, log *slog.Logger) {
	if (cfg.API.Tap || cfg.API.Pprof) && cfg.API.Admin.Address == "" && cfg.API.Admin.Socket == "" {
		log.Warn("api.tap and api.pprof are served only on the admin listener, which is off: set api.admin.address (e.g. 127.0.0.1:2021) or api.admin.socket",
			"tap", cfg.API.Tap, "pprof", cfg.API.Pprof)
	}
}
