package pipeline

import (
	"bytes"
	"fmt"
	"time"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input/lines"
	"github.com/sidelog/sidelog/parser"
)

// Process runs lines through the pipeline synchronously, as if input read
// them one after the other from one file at path (each element of raw is
// one line; blank lines are dropped and lines cut exactly as the tail
// does, see input/lines): the input's assembler
// (container framing, multiline; flushed at the end), its parser, the filter
// chain and the routes. Nothing is started, buffered or sent. It returns,
// per output name, each routed record as the JSON that outputs write, in
// order. `sidelog test` is built on it.
func (p *Pipeline) Process(inputName, path string, raw [][]byte) (map[string][][]byte, error) {
	var in *inputStage
	for _, s := range p.inputs {
		if s.name == inputName {
			in = s
		}
	}
	if in == nil {
		return nil, fmt.Errorf("no input named %q", inputName)
	}
	now := time.Now()
	var evs []*event.Event
	var asm parser.Assembler
	if in.newAsm != nil {
		asm = in.newAsm()
	}
	// The lines are cut as the tail cuts a file (input/lines): blank lines
	// are no record, a trailing \r goes, a long line is cut and flagged.
	lines.Split(bytes.Join(raw, []byte{'\n'}), in.maxLine, func(l []byte, end int64, truncated bool) {
		e := &event.Event{Raw: l, Input: inputName, Path: path, Time: now, Pos: event.Position{Offset: end}}
		if truncated {
			e.Flags |= event.Truncated
		}
		if asm != nil {
			evs = asm.Push(e, evs)
		} else {
			evs = append(evs, e)
		}
	})
	if asm != nil {
		evs = asm.Flush(evs)
	}
	out := map[string][][]byte{}
	for _, o := range p.outputs {
		out[o.name] = nil
	}
	for _, e := range evs {
		in.parser.Parse(e)
		if !p.filter(e) {
			continue
		}
		routed := false
		for _, o := range p.outputs {
			if o.route != nil {
				if ok, _ := o.route.Bool(e); !ok {
					continue
				}
			}
			routed = true
			out[o.name] = append(out[o.name], event.AppendJSON(nil, e))
		}
		if !routed {
			in.unrouted.Add(1)
		}
	}
	return out, nil
}
