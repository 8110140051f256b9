// Package logfmt parses `key=value` lines: values are strings (quoted
// values may hold spaces and the escapes \" \\ \n \r \t \uXXXX), a bare key
// is true. A key that appears twice keeps its last value.
package logfmt

import (
	"bytes"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/parser"
	"github.com/sidelog/sidelog/plugins"
)

func init() {
	plugins.RegisterParser("logfmt", plugins.Parser{
		New: func(parser.Config, plugins.ParserEnv) (parser.Parser, func() parser.Assembler, error) {
			return Parser{}, nil, nil
		},
	})
}

// Parser parses logfmt lines. It is stateless.
type Parser struct{}

// Parse implements parser.Parser. A line fails when a quoted value is not
// closed, a key is empty (`=v`), a key holds a quote, or the line holds no
// `key=value` pair at all (plain text).
func (Parser) Parse(e *event.Event) {
	m, reason := Decode(e.Raw)
	if reason != "" {
		parser.Fail(e, reason)
		return
	}
	e.Fields = m
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// Decode parses one logfmt line. The line is copied once; keys and plain
// values alias the copy.
func Decode(line []byte) (map[string]any, string) {
	b := append([]byte(nil), line...)
	str := func(s []byte) string { return unsafe.String(unsafe.SliceData(s), len(s)) }
	m := make(map[string]any, bytes.Count(b, []byte{'='})+1)
	pairs := 0
	i := 0
	for {
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i >= len(b) {
			break
		}
		ks := i
		for i < len(b) && !isSpace(b[i]) && b[i] != '=' {
			if b[i] == '"' {
				return nil, "logfmt: quote in key at offset " + strconv.Itoa(i)
			}
			i++
		}
		if i == ks {
			return nil, "logfmt: empty key at offset " + strconv.Itoa(i)
		}
		key := str(b[ks:i])
		if i >= len(b) || b[i] != '=' {
			m[key] = true
			continue
		}
		i++ // '='
		pairs++
		if i < len(b) && b[i] == '"' {
			v, j, reason := unquote(b, i)
			if reason != "" {
				return nil, reason
			}
			m[key] = v
			i = j
			continue
		}
		vs := i
		for i < len(b) && !isSpace(b[i]) {
			i++
		}
		m[key] = str(b[vs:i])
	}
	if pairs == 0 {
		return nil, "logfmt: no key=value pair"
	}
	return m, ""
}

// unquote decodes the quoted value whose opening quote is at i.
func unquote(b []byte, i int) (string, int, string) {
	start := i
	i++
	vs := i
	for i < len(b) && b[i] != '"' && b[i] != '\\' {
		i++
	}
	if i < len(b) && b[i] == '"' {
		return string(b[vs:i]), i + 1, ""
	}
	out := append(make([]byte, 0, i-vs+16), b[vs:i]...)
	for i < len(b) {
		c := b[i]
		switch c {
		case '"':
			return string(out), i + 1, ""
		case '\\':
			if i+1 >= len(b) {
				i++
				continue
			}
			switch e := b[i+1]; e {
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				if i+6 <= len(b) {
					if r, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 32); err == nil {
						out = utf8.AppendRune(out, rune(r))
						i += 6
						continue
					}
				}
				out = append(out, '\\', 'u')
			case '"', '\\':
				out = append(out, e)
			default: // unknown escape: kept as written
				out = append(out, '\\', e)
			}
			i += 2
		default:
			out = append(out, c)
			i++
		}
	}
	return "", -1, "logfmt: unterminated quoted value at offset " + strconv.Itoa(start)
}
