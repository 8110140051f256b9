// Package multiline groups the lines of one file (one stream for container
// logs) into events: stack traces, panics, tracebacks.
//
// With `start: <regex>`, a line matching the pattern starts a new group and
// every other line joins the pending group. The presets recognise traces
// instead: java (an exception class line, `at ...`, `Caused by:`,
// `Suppressed:`, `... N more`, indented lines join the line before), go
// (`panic:`/`fatal error:` then goroutine dumps up to `exit status N`) and
// python (`Traceback (most recent call last):` joins the line before, then
// the frames, the exception line and chained tracebacks).
//
// A group is emitted when a line starts the next one, when `timeout` passed
// since its last line (Deadline/Expire), when it reached `max_lines` lines or
// `max_age` since its first line (the next line then starts a new group:
// nothing is lost), or by Flush at the end of a file.
// Joined lines are separated by "\n"; a group is cut at max_line_bytes
// (Truncated). Blank lines inside a trace are held until the next line says
// whether the trace goes on; otherwise they are emitted alone, as without
// multiline.
package multiline

import (
	"fmt"
	"regexp"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/parser/internal/join"
)

// Defaults of timeout, max_lines and max_age.
const (
	DefaultTimeout  = time.Second
	DefaultMaxLines = 2000
	DefaultMaxAge   = 30 * time.Second
)

// Presets are the names accepted by `preset`.
var Presets = []string{"go", "java", "python"}

type action uint8

const (
	start action = iota // the line starts a new group
	add                 // the line joins the pending group
	hold                // a blank line inside a trace: decided by the next line
)

// rule decides what a line does given the pending state.
type rule interface {
	// next returns the action for line and the new state; pending says
	// whether a group is pending. state 0 is "outside a trace".
	next(state int, line []byte, pending bool) (action, int)
}

// Validate checks cfg and returns every problem, each prefixed with its key.
func Validate(cfg parser.MultilineConfig) []error {
	var errs []error
	switch {
	case cfg.Preset != "" && cfg.Start != "":
		errs = append(errs, fmt.Errorf("multiline: set either preset or start, not both"))
	case cfg.Preset == "" && cfg.Start == "":
		errs = append(errs, fmt.Errorf("multiline: set preset (go, java, python) or start"))
	case cfg.Preset != "":
		if _, ok := presets[cfg.Preset]; !ok {
			errs = append(errs, fmt.Errorf("multiline.preset: unknown preset %q (known: go, java, python)", cfg.Preset))
		}
	default:
		if _, err := regexp.Compile(cfg.Start); err != nil {
			errs = append(errs, fmt.Errorf("multiline.start: %v", err))
		}
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("multiline.timeout: must not be negative"))
	}
	if cfg.MaxLines < 0 {
		errs = append(errs, fmt.Errorf("multiline.max_lines: must not be negative"))
	}
	if cfg.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("multiline.max_age: must not be negative"))
	}
	return errs
}

// New compiles cfg once and returns the factory of per-file assemblers.
func New(cfg parser.MultilineConfig, maxLineBytes int) (func() parser.Assembler, error) {
	if errs := Validate(cfg); len(errs) > 0 {
		return nil, errs[0]
	}
	var r rule
	if cfg.Preset != "" {
		r = presets[cfg.Preset]
	} else {
		r = startRule{regexp.MustCompile(cfg.Start)}
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	maxLines, maxAge := cfg.MaxLines, cfg.MaxAge
	if maxLines == 0 {
		maxLines = DefaultMaxLines
	}
	if maxAge == 0 {
		maxAge = max(DefaultMaxAge, 10*timeout)
	}
	return func() parser.Assembler {
		return &Assembler{rule: r, timeout: timeout, maxLines: maxLines, maxAge: maxAge,
			now: time.Now, g: join.Group{Max: maxLineBytes}}
	}, nil
}

// Assembler groups the lines of one file. Used by one goroutine.
type Assembler struct {
	rule     rule
	timeout  time.Duration
	maxLines int
	maxAge   time.Duration
	now      func() time.Time

	g     join.Group
	held  []*event.Event // blank lines waiting for the next line
	state int
	lines int       // lines in the pending group
	first time.Time // when the pending group started
	last  time.Time // when the pending group (or held line) last grew
}

var (
	_ parser.Assembler   = (*Assembler)(nil)
	_ parser.Expirer     = (*Assembler)(nil)
	_ parser.LossCounter = (*Assembler)(nil)
)

// Push implements parser.Assembler.
func (a *Assembler) Push(line *event.Event, out []*event.Event) []*event.Event {
	now := a.now()
	pending := !a.g.Empty()
	if pending && (a.lines+len(a.held) >= a.maxLines || now.Sub(a.first) >= a.maxAge) {
		// the group ends here: emitted whole, and this line starts the
		// next one (the rule's state goes on: a trace may continue)
		out = a.emit(out)
		pending = false
	}
	act, state := a.rule.next(a.state, line.Raw, pending)
	a.state = state
	if !pending {
		act = start
	}
	switch act {
	case hold:
		a.held = append(a.held, line)
	case add:
		for _, h := range a.held {
			a.g.Add(h, "\n")
		}
		a.lines += len(a.held) + 1
		a.held = a.held[:0]
		a.g.Add(line, "\n")
	default:
		out = a.emit(out)
		a.g.Add(line, "\n")
		a.lines, a.first = 1, now
	}
	a.last = now
	return out
}

// emit appends the pending group and then the held lines, each alone.
func (a *Assembler) emit(out []*event.Event) []*event.Event {
	if e := a.g.Take(); e != nil {
		out = append(out, e)
	}
	for i, h := range a.held {
		out = append(out, h)
		a.held[i] = nil
	}
	a.held = a.held[:0]
	a.lines = 0
	return out
}

// Flush implements parser.Assembler.
func (a *Assembler) Flush(out []*event.Event) []*event.Event {
	return a.emit(out)
}

// Deadline implements parser.Assembler: timeout after the last line of a
// pending group, or max_age after its first line if that comes sooner.
func (a *Assembler) Deadline() (time.Time, bool) {
	if a.g.Empty() && len(a.held) == 0 {
		return time.Time{}, false
	}
	d := a.last.Add(a.timeout)
	if !a.g.Empty() {
		if m := a.first.Add(a.maxAge); m.Before(d) {
			d = m
		}
	}
	return d, true
}

// Expire implements parser.Expirer: the pending group when its deadline
// is at or before now.
func (a *Assembler) Expire(now time.Time, out []*event.Event) []*event.Event {
	if d, ok := a.Deadline(); ok && !now.Before(d) {
		return a.emit(out)
	}
	return out
}

// TakeLost implements parser.LossCounter: bytes of lines dropped past
// max_line_bytes.
func (a *Assembler) TakeLost() int64 { return a.g.TakeLost() }

// startRule: a line matching the pattern starts a group, any other line
// joins the pending one.
type startRule struct{ re *regexp.Regexp }

func (r startRule) next(_ int, line []byte, pending bool) (action, int) {
	if !pending || r.re.Match(line) {
		return start, 0
	}
	return add, 0
}

var presets = map[string]rule{
	"java":   javaRule{},
	"go":     goRule{},
	"python": pythonRule{},
}

func isBlank(line []byte) bool {
	for _, c := range line {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// java: lines that continue a trace join whatever line came before (the log
// line that reported the exception).
type javaRule struct{}

var javaCont = regexp.MustCompile(`^(?:[ \t]+\S|Caused by: |Suppressed: |(?:[a-zA-Z_$][\w$]*\.)+[\w$]*(?:Exception|Error|Throwable)(?:: |:?\r?$))`)

func (javaRule) next(_ int, line []byte, _ bool) (action, int) {
	if javaCont.Match(line) {
		return add, 0
	}
	return start, 0
}

// go: a panic or fatal error starts a group; goroutine headers, frames
// (function lines and tab-indented file lines), `created by`, signal and
// register lines and `exit status N` join it; blank lines are held.
type goRule struct{}

var (
	goStart = regexp.MustCompile(`^(?:panic: |fatal error: |SIG[A-Z]+: |goroutine \d+ (?:gp=\S+ m=\S+ mp=\S+ )?\[)`)
	goCont  = regexp.MustCompile(`^(?:\t|    |goroutine \d+ |created by |\[signal |\[recovered\]|exit status \d+|\.\.\.\d* ?(?:additional )?frames elided\.\.\.|(?:r[a-z0-9]{1,5}|cs|fs|gs|pc|sp|lr|fp)\s+0x[0-9a-f]+|\S+\(.*\)\s*$)`)
)

func (goRule) next(state int, line []byte, _ bool) (action, int) {
	if goStart.Match(line) && !(state == 1 && line[0] == 'g') {
		return start, 1
	}
	if state == 1 {
		if isBlank(line) {
			return hold, 1
		}
		if goCont.Match(line) {
			return add, 1
		}
	}
	return start, 0
}

// python: `Traceback (most recent call last):` joins the line before
// (logging.exception writes the message first), indented frame lines join,
// the first unindented line is the exception and ends the frames; a blank
// line, `During handling of the above exception...` or `The above exception
// was the direct cause...` and another traceback may follow.
type pythonRule struct{}

var (
	pyTraceback = regexp.MustCompile(`^\s*Traceback \(most recent call last\):`)
	pyChain     = regexp.MustCompile(`^(?:During handling of the above exception|The above exception was the direct cause)`)
)

const (
	pyOut = iota
	pyFrames
	pyAfter
)

func (pythonRule) next(state int, line []byte, _ bool) (action, int) {
	if pyTraceback.Match(line) {
		return add, pyFrames
	}
	switch state {
	case pyFrames:
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return add, pyFrames
		}
		if isBlank(line) {
			return hold, pyFrames
		}
		return add, pyAfter // the exception line
	case pyAfter:
		if isBlank(line) {
			return hold, pyAfter
		}
		if pyChain.Match(line) {
			return add, pyAfter
		}
	}
	return start, pyOut
}
