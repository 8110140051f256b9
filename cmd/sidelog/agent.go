package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidelog/sidelog/api"
	"github.com/sidelog/sidelog/api/tap"
	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/datadir"
	"github.com/sidelog/sidelog/delivery"
	kafkain "github.com/sidelog/sidelog/input/kafka"
	"github.com/sidelog/sidelog/input/tail"
	"github.com/sidelog/sidelog/metrics"
	"github.com/sidelog/sidelog/pipeline"
	"github.com/sidelog/sidelog/plugins"
)

// agent holds what outlives one pipeline across reloads: the metrics, the
// tap hub and the HTTP API.
type agent struct {
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	blocks  *delivery.BlockState
	hub     *tap.Hub
	api     *api.Server
	ready   atomic.Bool
	orphans atomic.Int64
	current atomic.Pointer[pipeline.Pipeline]
	dl      atomic.Pointer[delivery.DeadLetterFiles]
}

// statusDoc is /status: the metrics snapshot plus what outputs report of
// themselves (e.g. datadog's auth_error state).
type statusDoc struct {
	metrics.Snapshot
	OutputDetails map[string]outputDetail `json:"output_details,omitempty"`
}

type outputDetail struct {
	State     string `json:"state"`
	LastError string `json:"last_error,omitempty"`
}

func (a *agent) status() any {
	doc := statusDoc{Snapshot: a.metrics.Snapshot()}
	if p := a.current.Load(); p != nil {
		for name, o := range p.Outputs() {
			if s, ok := o.(interface{ Status() (string, string) }); ok {
				if doc.OutputDetails == nil {
					doc.OutputDetails = map[string]outputDetail{}
				}
				st, last := s.Status()
				doc.OutputDetails[name] = outputDetail{State: st, LastError: last}
			}
		}
	}
	return doc
}

func newAgent(ctx context.Context, cfg *config.Config, dd *datadir.Dir, exitOnEOF bool, log *slog.Logger, reload func(context.Context) error) (*agent, error) {
	a := &agent{log: log, reg: prometheus.NewRegistry(), hub: tap.NewHub()}
	var err error
	if a.metrics, err = metrics.New(a.reg, version); err != nil {
		return nil, err
	}
	a.blocks = delivery.NewBlockState(log)
	a.metrics.SetBlocks(a.blocks)
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sidelog_orphan_buffers",
		Help: "Disk buffers of outputs no longer in the config, kept until `sidelog buffer drop`.",
	}, func() float64 { return float64(a.orphans.Load()) }))
	a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sidelog_parser_invalid_utf8_total",
		Help: "Lines holding invalid UTF-8 (kept as bytes, written as U+FFFD).",
	}, func() float64 { return float64(parserStats().InvalidUTF8) }))
	o := apiOptions(cfg)
	o.Gatherer = a.reg
	o.Ready = a.ready.Load
	o.Status = a.status // the metrics snapshot and what outputs report of themselves
	o.Hub = a.hub
	o.Logger = log
	o.Reload = reload
	o.Replay = a.replay
	a.api = api.New(o)
	if err := a.api.Start(ctx); err != nil {
		return nil, fmt.Errorf("api.address %s: %w", cfg.API.Address, err)
	}
	if cfg.API.Address != "" {
		log.Info("API listening", "address", a.api.Addr())
	}
	if addr := a.api.AdminAddr(); addr != "" {
		log.Info("admin API listening (tap, pprof, POST /-/reload)", "address", addr, "token", cfg.API.Admin.TokenFile != "")
	}
	warnAdminOff(cfg, log)
	return a, nil
}

// options are the pipeline options of one config.
func (a *agent) options(cfg *config.Config, dd *datadir.Dir, exitOnEOF bool, log *slog.Logger) pipeline.Options {
	return pipeline.Options{
		Registry:   plugins.Default,
		Logger:     log,
		ExitOnEOF:  exitOnEOF,
		InstanceID: dd.InstanceID,
		Version:    agentVersion(),
		Metrics:    a.metrics,
		Blocks:     a.blocks,
		Tap:        a.hub,
		Started:    func() { a.ready.Store(true) },
		NewBuffer: func(o *config.Output, defaultType string) (buffer.Buffer, error) {
			return buffer.New(pipeline.BufferDir(cfg.DataDir, o.Name), o.Buffer, defaultType,
				buffer.WithLogger(log.With("output", o.Name)))
		},
		DeadLetter: a.deadLetter(cfg, log),
	}
}

// attach registers a freshly built pipeline's statistics and reports
// orphaned buffers.
func (a *agent) attach(cfg *config.Config, p *pipeline.Pipeline) {
	a.current.Store(p)
	a.metrics.SetPerFileLag(cfg.Metrics.PerFileLag)
	a.metrics.Prune(p.Names())
	for name, in := range p.Inputs() {
		if t, ok := in.(*tail.Tailer); ok {
			a.metrics.RegisterTail(name, func() metrics.TailStats { return tailStats(t.Stats()) })
		}
		if k, ok := in.(*kafkain.Input); ok {
			a.metrics.RegisterKafka(name, func() []metrics.PartitionLag { return kafkaLag(k.Lag()) })
		}
	}
	names := make([]string, 0, len(cfg.Outputs))
	for _, o := range cfg.Outputs {
		names = append(names, o.Name)
	}
	orphans, err := buffer.Orphans(cfg.DataDir, names)
	if err != nil {
		a.log.Warn("cannot list the disk buffers", "error", err.Error())
	}
	a.orphans.Store(int64(len(orphans)))
	for _, o := range orphans {
		st, _ := buffer.StatsOf(pipeline.BufferDir(cfg.DataDir, o))
		records := int64(0)
		if st != nil {
			records = int64(st.Records)
		}
		a.log.Warn("disk buffer of an output that is no longer configured: kept until `sidelog buffer drop --output NAME`",
			"output", o, "records", records)
	}
}

// replay sends output's dead letters through the running pipeline's output
// (POST /dead-letter/replay, asked by `sidelog dead-letter replay`).
func (a *agent) replay(ctx context.Context, name string) (int, error) {
	p, dl := a.current.Load(), a.dl.Load()
	if p == nil || dl == nil {
		return 0, errors.New("the agent is not running a pipeline yet")
	}
	out, ok := p.Outputs()[name]
	if !ok {
		return 0, fmt.Errorf("no output %q in the running config", name)
	}
	return dl.Replay(name, func(batch [][]byte) error { return out.Write(ctx, batch) })
}

func (a *agent) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2e9)
	defer cancel()
	_ = a.api.Shutdown(ctx)
}

func tailStats(s tail.Stats) metrics.TailStats {
	out := metrics.TailStats{OpenFiles: s.OpenFiles, Rotations: int64(s.Rotations), Truncations: int64(s.Truncations),
		LostBytes: make(map[string]int64, len(s.Lost)), OpenErrors: int64(s.OpenErrors)}
	for r, n := range s.Lost {
		out.LostBytes[r] = int64(n)
	}
	for _, f := range s.Files {
		out.Files = append(out.Files, metrics.FileStats{Path: f.Path, Size: f.Size, Offset: f.Offset})
	}
	return out
}

func kafkaLag(ps []kafkain.PartitionLag) []metrics.PartitionLag {
	out := make([]metrics.PartitionLag, len(ps))
	for i, p := range ps {
		out[i] = metrics.PartitionLag{Topic: p.Topic, Partition: p.Partition, Lag: p.Lag}
	}
	return out
}
