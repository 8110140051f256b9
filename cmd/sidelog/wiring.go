package main

import (
	"log/slog"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/parser"
)

func parserStats() parser.Stats { return parser.ReadStats() }

// deadLetter returns the dead-letter files of cfg's outputs, counting
// evicted records in the outputs' metrics.
func (a *agent) deadLetter(cfg *config.Config, log *slog.Logger) func(o *config.Output) delivery.DeadLetter {
	dl := delivery.NewDeadLetterFiles(cfg.DataDir, int64(cfg.DeadLetter.MaxBytes), log)
	dl.WhenFull = cfg.DeadLetter.WhenFull
	dl.SourceHeaders = true // the pipeline puts a source header on every record
	a.dl.Store(dl)
	dl.OnEvict = func(output string, records int) { a.metrics.Output(output).DeadLetterEv.Add(records) }
	return func(*config.Output) delivery.DeadLetter { return dl }
}
