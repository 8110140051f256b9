package pipeline

import "github.com/sidelog/sidelog/parser"

// steering asks the pipeline's steering filter (the kubernetes filter with
// api) about each record's path before the record is parsed: whether the
// pod's lines are excluded (sidelog.io/exclude) and which named parser
// reads them (sidelog.io/parser). This happens in the input's worker,
// after the input's assembler (container framing, multiline) and before
// the parser and the filters. The answer is kept for consecutive records
// of the same path within one batch, so an annotation change applies from
// the next batch on.
type steering struct {
	p       *Pipeline
	in      *inputStage
	path    string
	valid   bool
	exclude bool
	parser  parser.Parser
}

func (s *steering) steer(path string) (bool, parser.Parser) {
	if s.valid && path == s.path {
		return s.exclude, s.parser
	}
	exclude, name := s.p.steer.Steer(path)
	prs := s.in.parser
	if name != "" {
		if np, ok := s.in.named[name]; ok {
			prs = np
		} else {
			s.p.unknownParser(name)
		}
	}
	s.path, s.valid, s.exclude, s.parser = path, true, exclude, prs
	return exclude, prs
}

// unknownParser logs, once per name, a sidelog.io/parser annotation naming
// no parser of `parsers:`; those lines keep the input's parser.
func (p *Pipeline) unknownParser(name string) {
	if _, seen := p.unknownParsers.LoadOrStore(name, true); !seen {
		p.log.Warn("a pod's sidelog.io/parser names no parser of `parsers:`; its lines keep the input's parser", "parser", name)
	}
}
