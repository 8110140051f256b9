package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/sidelog/sidelog/api"
	"github.com/sidelog/sidelog/buffer"
	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/datadir"
	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/pipeline"
	"github.com/sidelog/sidelog/plugins"
)

func init() {
	extraCommands["tap"] = api.TapCommand
	extraCommands["buffer"] = cmdBuffer
}

const bufferUsage = `usage:
  sidelog buffer verify [-c FILE | --data-dir DIR] [--output NAME]   check every segment and the ledger
  sidelog buffer stats  [-c FILE | --data-dir DIR] [--output NAME]   sizes, records, oldest unacknowledged age
  sidelog buffer drop   [-c FILE | --data-dir DIR] --output NAME     remove an output's disk buffer (agent stopped)
`

// dataDirFlags resolves the data directory from -c or --data-dir.
func dataDirFlags(fs *flag.FlagSet) func() (string, error) {
	var cfgPath configFlag
	fs.Var(&cfgPath, "c", "config file or directory (its data_dir)")
	dir := fs.String("data-dir", "", "the data directory")
	return func() (string, error) {
		switch {
		case *dir != "":
			return *dir, nil
		case len(cfgPath) > 0:
			cfg, err := config.LoadFiles(cfgPath, plugins.Default)
			if err != nil {
				return "", err
			}
			return cfg.DataDir, nil
		}
		return "/var/lib/sidelog", nil
	}
}

func cmdBuffer(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, bufferUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("buffer "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := dataDirFlags(fs)
	name := fs.String("output", "", "the output whose buffer to look at")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	dir, err := dataDir()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	switch sub {
	case "verify", "stats":
		names := []string{*name}
		if *name == "" {
			names = nil
			ents, err := os.ReadDir(filepath.Join(dir, "buffer"))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				fmt.Fprintln(stderr, err)
				return 1
			}
			for _, e := range ents {
				if e.IsDir() {
					names = append(names, e.Name())
				}
			}
			sort.Strings(names)
			if len(names) == 0 {
				fmt.Fprintf(stdout, "no disk buffers under %s\n", filepath.Join(dir, "buffer"))
				return 0
			}
		}
		code := 0
		for _, n := range names {
			var r *buffer.Report
			var err error
			if sub == "verify" {
				r, err = buffer.Verify(pipeline.BufferDir(dir, n))
			} else {
				r, err = buffer.StatsOf(pipeline.BufferDir(dir, n))
			}
			if err != nil {
				fmt.Fprintf(stderr, "output %s: %v\n", n, err)
				code = 1
				continue
			}
			fmt.Fprint(stdout, r.String())
			if sub == "verify" && !r.OK() {
				code = 1
			}
		}
		return code
	case "drop":
		if *name == "" {
			fmt.Fprint(stderr, "sidelog buffer drop: --output NAME is required\n")
			return 2
		}
		// Only with the agent stopped: take the data_dir lock.
		d, err := datadir.Open(dir)
		if err != nil {
			fmt.Fprintln(stderr, "sidelog buffer drop:", err)
			return 1
		}
		defer d.Close()
		if err := buffer.Drop(dir, *name); err != nil {
			fmt.Fprintln(stderr, "sidelog buffer drop:", err)
			return 1
		}
		fmt.Fprintf(stdout, "dropped the buffer of output %s\n", *name)
		return 0
	}
	fmt.Fprint(stderr, bufferUsage)
	return 2
}

func init() { extraCommands["dead-letter"] = cmdDeadLetter }

const deadLetterUsage = `usage:
  sidelog dead-letter replay -c FILE --output NAME   send the output's dead-lettered records again
      (agent stopped: sent from this process; agent running: asked to the agent through api.address)
`

// cmdDeadLetter is `sidelog dead-letter replay`: it builds the output from
// the config and sends the dead-lettered records through it, oldest file
// first; a file is removed once all its records are delivered.
func cmdDeadLetter(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "replay" {
		fmt.Fprint(stderr, deadLetterUsage)
		return 2
	}
	fs := flag.NewFlagSet("dead-letter replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfgPath configFlag
	fs.Var(&cfgPath, "c", "config file or directory (repeatable)")
	name := fs.String("output", "", "the output whose dead letters to send again")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if len(cfgPath) == 0 || *name == "" {
		fmt.Fprint(stderr, deadLetterUsage)
		return 2
	}
	cfg, err := config.LoadFiles(cfgPath, plugins.Default)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	d, err := datadir.Open(cfg.DataDir)
	if errors.Is(err, datadir.ErrLocked) {
		return replayThroughAgent(cfg, *name, err, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "sidelog dead-letter replay:", err)
		return 1
	}
	defer d.Close()
	log := newLogger(stderr, cfg.LogLevel)
	p, err := pipeline.Build(cfg, pipeline.Options{Registry: plugins.Default, Logger: log, InstanceID: d.InstanceID})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer p.Close()
	out, ok := p.Outputs()[*name]
	if !ok {
		fmt.Fprintf(stderr, "sidelog dead-letter replay: no output %q in %s\n", *name, cfgPath.String())
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := delivery.Replay(cfg.DataDir, *name, func(batch [][]byte) error {
		return out.Write(ctx, batch)
	})
	fmt.Fprintf(stdout, "replayed %d records to output %s\n", n, *name)
	if err != nil {
		fmt.Fprintln(stderr, "sidelog dead-letter replay:", err)
		return 1
	}
	return 0
}

// replayThroughAgent asks the agent that holds the data directory to replay
// (POST /dead-letter/replay on its admin listener, api.admin, with its
// token), or says why it cannot.
func replayThroughAgent(cfg *config.Config, name string, lockErr error, stdout, stderr io.Writer) int {
	adm := cfg.API.Admin
	if adm.Address == "" && adm.Socket == "" {
		fmt.Fprintf(stderr, "sidelog dead-letter replay: %v\nthe agent is running and its admin listener is off (api.admin), so it cannot be asked to replay: set api.admin.address or api.admin.socket, or stop the agent and run this again\n", lockErr)
		return 1
	}
	c := api.AdminClient{Address: adm.Address, Socket: adm.Socket, TokenFile: adm.TokenFile}
	res, err := c.Replay(context.Background(), name)
	if err != nil {
		fmt.Fprintf(stderr, "sidelog dead-letter replay: %v\nthe agent holding the data directory could not be asked: %v\n", lockErr, err)
		return 1
	}
	fmt.Fprintf(stdout, "replayed %d records to output %s (through the running agent)\n", res.Replayed, name)
	if res.Error != "" {
		fmt.Fprintln(stderr, "sidelog dead-letter replay:", res.Error)
		return 1
	}
	return 0
}
