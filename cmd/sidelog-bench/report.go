package main

import (
	"fmt"
	"io"
	"strings"
)

// report is the outcome of a bench invocation, printed as Markdown (so that
// it pastes into docs/benchmarks.md as it is).
type report struct {
	Options options
	Date    string
	Machine string
	Commit  string
	Sidelog string
	Naive   *Result
	Results []Result
}

// Targets of issue 10, checked in the table.
type target struct {
	MaxCPURatio float64 // CPU s / naive CPU s (0: none)
	MinMBps     float64 // 0: none
	MaxRSSMiB   float64
}

var targets = map[string]target{
	"1":  {MaxCPURatio: 0.5, MaxRSSMiB: 64},
	"2":  {MaxCPURatio: 1.0, MinMBps: 100, MaxRSSMiB: 64},
	"2b": {MinMBps: 100, MaxRSSMiB: 64},
	"3":  {MinMBps: 60, MaxRSSMiB: 64},
}

const gib = 1 << 30

func (r *report) write(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "## sidelog-bench %s\n\n", r.Date)
	fmt.Fprintf(w, "- machine: %s\n", r.Machine)
	fmt.Fprintf(w, "- commit: %s; binary: %s\n", r.Commit, r.Sidelog)
	fmt.Fprintf(w, "- records: %d a data set; median of %d runs; MB = 10^6 bytes of the input file; sink: %s\n", o.Lines, o.Runs, o.Sink)
	seen := map[string]bool{}
	for _, res := range append([]Result{derefResult(r.Naive)}, r.Results...) {
		if res.Input.Path != "" && !seen[res.Input.Stats.Kind] {
			seen[res.Input.Stats.Kind] = true
			s := res.Input.Stats
			fmt.Fprintf(w, "- data set %s: %d records, %d lines, %.1f MiB (%.1f bytes a record)\n", s.Kind, s.Records, s.PhysicalLines, mib(s.Bytes), float64(s.Bytes)/float64(max(s.Records, 1)))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | wall s | CPU s (user+sys) | CPU / naive | MB/s | records/s | CPU s / GiB | peak RSS MiB | sink CPU s | records out | targets |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	var naiveCPU float64
	if r.Naive != nil {
		r.row(w, *r.Naive, 0)
		if r.Naive.Status == "ok" {
			naiveCPU = r.Naive.Measure.CPU().Seconds()
		}
	}
	var notes []string
	for _, res := range r.Results {
		if res.Idle != nil || res.Scenario.Data == "" {
			continue
		}
		r.row(w, res, naiveCPU)
		if res.Profile != "" {
			notes = append(notes, fmt.Sprintf("CPU profile of scenario %s: %s", res.Scenario.ID, res.Profile))
		}
	}
	for _, res := range r.Results {
		if res.Scenario.Data != "" {
			continue
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Scenario 4, %s:\n\n", res.Scenario.Title)
		fmt.Fprintln(w, "| files | appending: CPU % of a core | quiet: CPU % of a core | RSS at rest MiB | peak RSS MiB | records out | targets |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
		if res.Idle == nil {
			fmt.Fprintf(w, "| %d | %s | | | | | |\n", o.IdleFiles, res.Status)
			continue
		}
		m := res.Idle
		verdict := "met"
		if m.AppendCPU >= 0.01 || m.QuietCPU >= 0.01 || mib(m.MaxRSS) >= 40 {
			verdict = "**missed** (< 1% of a core, < 40 MiB)"
		}
		fmt.Fprintf(w, "| %d (1 line/s each for %s, then %s quiet) | %.2f | %.2f | %.1f | %.1f | %d | %s |\n",
			m.Files, m.Window, m.QuietWindow, 100*m.AppendCPU, 100*m.QuietCPU, mib(m.RSSAtRest), mib(m.MaxRSS), m.Records, verdict)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
}

func derefResult(r *Result) Result {
	if r == nil {
		return Result{}
	}
	return *r
}

func (r *report) row(w io.Writer, res Result, naiveCPU float64) {
	name := res.Scenario.ID + ". " + res.Scenario.Title
	if res.Scenario.ID == "naive" {
		name = res.Scenario.Title
	}
	if res.Status != "ok" {
		fmt.Fprintf(w, "| %s | %s | | | | | | | | | |\n", name, strings.ReplaceAll(res.Status, "|", "\\|"))
		return
	}
	m := res.Measure
	wall, cpu := m.Wall.Seconds(), m.CPU().Seconds()
	bytes := float64(res.Input.Stats.Bytes)
	mbps := bytes / 1e6 / wall
	ratio := "-"
	var rv float64
	if naiveCPU > 0 && res.Scenario.ID != "naive" {
		rv = cpu / naiveCPU
		ratio = fmt.Sprintf("%.2f", rv)
	}
	sink := "-"
	if res.Scenario.Sink != "" {
		sink = fmt.Sprintf("%.2f", m.SinkCPU.Seconds())
	}
	verdict := ""
	if t, ok := targets[res.Scenario.ID]; ok {
		var miss []string
		if t.MaxCPURatio > 0 && (rv == 0 || rv > t.MaxCPURatio) {
			miss = append(miss, fmt.Sprintf("CPU ≤ %.1fx naive", t.MaxCPURatio))
		}
		if t.MinMBps > 0 && mbps < t.MinMBps {
			miss = append(miss, fmt.Sprintf("≥ %.0f MB/s", t.MinMBps))
		}
		if res.Scenario.ID == "1" && wall*(480*(1<<20))/bytes >= 2 {
			miss = append(miss, "< 2 s for 480 MiB")
		}
		if mib(m.MaxRSS) >= t.MaxRSSMiB {
			miss = append(miss, fmt.Sprintf("RSS < %.0f MiB", t.MaxRSSMiB))
		}
		verdict = "met"
		if len(miss) > 0 {
			verdict = "**missed**: " + strings.Join(miss, ", ")
		}
	}
	fmt.Fprintf(w, "| %s | %.2f | %.2f | %s | %.0f | %.0f | %.2f | %.1f | %s | %d | %s |\n",
		name, wall, cpu, ratio, mbps, float64(res.Input.Stats.Records)/wall, cpu/(bytes/gib), mib(m.MaxRSS), sink, res.Records, verdict)
}
