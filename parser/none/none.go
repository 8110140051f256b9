// Package none is the parser that keeps the line as it is: the record is
// {"message": <line>}.
package none

import (
	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/plugins"
)

func init() {
	plugins.RegisterParser("none", plugins.Parser{
		New: func(parser.Config, plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
			return Parser{}, nil, nil
		},
	})
}

// Parser sets Fields to {"message": string(Raw)}.
type Parser struct{}

// Parse implements parser.Parser.
func (Parser) Parse(e *event.Event) {
	e.Fields = map[string]any{parser.KeyMessage: string(e.Raw)}
}
