// Package stdout writes records to the agent's standard output, one per
// line, as JSON or as readable text.
package stdout

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/plugins"
)

// Config is the stdout output's config.
type Config struct {
	// Format is json (one JSON object a line, default) or text
	// ("<time> <input> <message>").
	Format string `yaml:"format"`
}

// Validate checks the format.
func (c *Config) Validate() error {
	switch c.Format {
	case "json", "text":
		return nil
	}
	return &plugins.KeyError{Key: "format", Err: fmt.Errorf("must be json or text, not %q", c.Format)}
}

func init() {
	plugins.RegisterOutput("stdout", plugins.Output{
		Config: func() any { return &Config{Format: "json"} },
		New: func(cfg any, env plugins.OutputEnv) (output.Output, error) {
			return New(cfg.(*Config), os.Stdout), nil
		},
	})
}

// mu serialises writes of every stdout output, so two outputs' lines never
// interleave.
var mu sync.Mutex

// Output writes to w.
type Output struct {
	text bool
	w    io.Writer
	buf  []byte
}

// New returns a stdout output writing to w.
func New(c *Config, w io.Writer) *Output {
	return &Output{text: c.Format == "text", w: w}
}

// Keys: text format reads message; json reads nothing but Raw/Fields.
func (o *Output) Keys() ([]string, bool) {
	if o.text {
		return []string{"message", "msg"}, false
	}
	return nil, false
}

// Encode appends one line (with its newline).
func (o *Output) Encode(dst []byte, e *event.Event) ([]byte, error) {
	if !o.text {
		dst = event.AppendJSON(dst, e)
		return append(dst, '\n'), nil
	}
	dst = e.Time.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	dst = append(dst, ' ')
	dst = append(dst, e.Input...)
	dst = append(dst, ' ')
	v, _ := e.Known("message")
	msg, ok := v.(string)
	if !ok {
		v, _ = e.Known("msg")
		msg, ok = v.(string)
	}
	if ok && !e.Has(event.RawJSON) {
		dst = append(dst, msg...)
	} else {
		dst = event.AppendJSON(dst, e)
	}
	return append(dst, '\n'), nil
}

// Write writes the batch with one write call.
func (o *Output) Write(_ context.Context, batch [][]byte) error {
	mu.Lock()
	defer mu.Unlock()
	o.buf = o.buf[:0]
	for _, r := range batch {
		o.buf = append(o.buf, r...)
	}
	_, err := o.w.Write(o.buf)
	if cap(o.buf) > 8<<20 {
		o.buf = nil
	}
	return err
}

// Close does nothing: stdout stays open.
func (o *Output) Close(context.Context) error { return nil }
