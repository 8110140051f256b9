// Package json is the JSON parser, sidelog's hot path: a hand-written
// scanner that validates the whole line (strict JSON, an object at the top
// level) and builds only what the pipeline reads.
//
// Values: objects become map[string]any, arrays []any, strings string, true
// and false bool, null nil; a number is int64 when it is an integer literal
// (no fraction, no exponent) that fits in int64, else float64 (json.Number
// when it overflows float64). Invalid UTF-8 inside strings is kept as is and
// flags the event InvalidUTF8; a valid line of valid UTF-8 gets RawJSON.
package json

import (
	"sync/atomic"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/plugins"
)

func init() {
	plugins.RegisterParser("json", plugins.Parser{
		New: func(cfg parser.Config, env plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
			return New(), nil, nil
		},
	})
}

// Parser parses JSON object lines. It is safe for concurrent use once
// SelectKeys (if at all) has been called.
type Parser struct {
	selected bool                        // SelectKeys(keys, false) was called
	keys     []string                    // the selected keys (small sets)
	keySet   map[string]string           // the selected keys (large sets)
	hint     atomic.Int32                // top-level key count of a recent line
	lazy     func(*event.Event)          // p.complete, bound once
	want     func([]byte) (string, bool) // p.wantKey, bound once
	strs     internTable                 // selected string values seen often
	sel      *event.Selection            // the selected keys, for the events
	lens     uint64                      // keyLenBit of each selected key
}

var (
	_ parser.Parser      = (*Parser)(nil)
	_ parser.KeySelector = (*Parser)(nil)
)

// New returns a parser that parses every line fully.
func New() *Parser { return &Parser{} }

// SelectKeys implements parser.KeySelector.
func (p *Parser) SelectKeys(keys []string, all bool) {
	if all {
		p.selected, p.keys, p.keySet, p.sel = false, nil, nil, nil
		return
	}
	p.selected = true
	p.lazy = p.complete
	p.want = p.wantKey
	p.keys = append([]string(nil), keys...)
	p.sel = event.NewSelection(p.keys)
	p.lens = 0
	for _, k := range keys {
		p.lens |= keyLenBit(len(k))
	}
	p.keySet = nil
	if len(keys) > 8 {
		p.keySet = make(map[string]string, len(keys))
		for _, k := range keys {
			p.keySet[k] = k
		}
	}
}

// wantKey reports whether key is selected, and returns the selected key's
// own string so that the map key costs no allocation.
func (p *Parser) wantKey(key []byte) (string, bool) {
	if p.keySet != nil {
		k, ok := p.keySet[string(key)]
		return k, ok
	}
	for _, k := range p.keys {
		if k == string(key) {
			return k, true
		}
	}
	return "", false
}

// Parse implements parser.Parser.
func (p *Parser) Parse(e *event.Event) {
	if p.selected {
		p.parseSelected(e)
		return
	}
	m, s := p.parseFull(e.Raw)
	if s.err != errNone {
		parser.Fail(e, s.reason())
		return
	}
	e.Fields = m
	setFlags(e, &s)
}

// setFlags sets RawJSON unless the line has invalid UTF-8 or a duplicate
// key: such a line is written from Fields, where the last value of a
// duplicated key won (Elasticsearch refuses a document with a duplicate
// field; the raw line would be dead-lettered). RawPlain: s met no escape.
func setFlags(e *event.Event, s *scanner) {
	const raw = event.RawJSON | event.RawChecked | event.RawPlain
	switch {
	case s.badUTF8:
		e.Flags |= event.InvalidUTF8
		e.Flags &^= raw
	case s.dup:
		e.Flags &^= raw
	case s.escAt != 0:
		e.Flags = e.Flags&^event.RawPlain | event.RawJSON | event.RawChecked
	default:
		e.Flags |= raw
	}
}

// parseFull builds the whole object. The line is copied once; strings alias
// the copy.
func (p *Parser) parseFull(raw []byte) (map[string]any, scanner) {
	s := scanner{buf: append([]byte(nil), raw...), owned: true}
	i := skipWS(s.buf, 0)
	if i >= len(s.buf) || s.buf[i] != '{' {
		return nil, notObject(&s, i)
	}
	m := make(map[string]any, int(p.hint.Load()))
	if i = s.parseObject(i, m); i < 0 {
		return nil, s
	}
	if i = skipWS(s.buf, i); i != len(s.buf) {
		s.fail(errTrailing, i)
		return nil, s
	}
	if n := int32(len(m)); n != p.hint.Load() {
		p.hint.Store(n)
	}
	return m, s
}

// notObject records why a line that does not start with '{' fails: it is
// either other JSON or not JSON at all.
func notObject(s *scanner, i int) scanner {
	if i >= len(s.buf) {
		s.fail(errEOF, i)
		return *s
	}
	if s.skipValue(i) >= 0 { // other JSON (maybe followed by more): not an object
		s.err = errNone
		s.fail(errNotObject, i)
	}
	return *s
}

func (p *Parser) parseSelected(e *event.Event) {
	s := scanner{buf: e.Raw, intern: &p.strs}
	p.parseSelectedWith(e, &s)
}

func (p *Parser) parseSelectedWith(e *event.Event, sp *scanner) {
	s := sp
	i := skipWS(s.buf, 0)
	if i >= len(s.buf) || s.buf[i] != '{' {
		notObject(s, i)
		parser.Fail(e, s.reason())
		return
	}
	e.ResetFields()
	if len(p.keys) == 0 {
		i = s.skipObject(i)
	} else {
		// the selected keys go into the event itself (AddField): no map
		i = s.selectObject(i, e, p.want, p.lens)
	}
	if i >= 0 {
		if i = skipWS(s.buf, i); i != len(s.buf) {
			s.fail(errTrailing, i)
		}
	}
	if s.err != errNone {
		parser.Fail(e, s.reason())
		return
	}
	setFlags(e, s)
	e.SetLazy(p.lazy)
	if p.sel != nil {
		e.SetSelection(p.sel)
	}
}

// complete fills the keys that parseSelected left out; keys already present
// (selected, or added by a later stage) are kept.
func (p *Parser) complete(e *event.Event) {
	m, s := p.parseFull(e.Raw)
	if s.err != errNone { // cannot happen: the line was validated
		return
	}
	if e.Fields == nil {
		e.Fields = m
		return
	}
	for k, v := range m {
		if _, ok := e.Fields[k]; !ok {
			e.Fields[k] = v
		}
	}
}

// Valid reports whether line is one JSON object (surrounding space allowed)
// and whether its strings are valid UTF-8.
func Valid(line []byte) (ok, validUTF8 bool) {
	s := scanner{buf: line}
	i := skipWS(line, 0)
	if i >= len(line) || line[i] != '{' {
		return false, false
	}
	if i = s.skipObject(i); i < 0 || skipWS(line, i) != len(line) {
		return false, false
	}
	return true, !s.badUTF8
}

// ParseObject parses line as one JSON object, for other parsers (docker)
// that read JSON framing. reason is empty on success.
func ParseObject(line []byte) (m map[string]any, validUTF8 bool, reason string) {
	var p Parser
	m, s := p.parseFull(line)
	if s.err != errNone {
		return nil, false, s.reason()
	}
	return m, !s.badUTF8, ""
}
