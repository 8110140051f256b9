package main

import (
	"log/slog"

	"github.com/sidelog/sidelog/config"
	"github.com/sidelog/sidelog/delivery"
	"github.com/sidelog/sidelog/parser"
)

func parserStats() parser.Stats { return parser.ReadStats() }

// deadLetter returns the dead-letter file factory of cfg (nil until the
// delivery package provides one).
func deadLetter(cfg *config.Config, log *slog.Logger) func(o *config.Output) delivery.DeadLetter {
	return nil
}
