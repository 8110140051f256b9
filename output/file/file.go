// Package file appends records as NDJSON to a file.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/output"
	"github.com/sidelog/sidelog/plugins"
)

// Config is the file output's config.
type Config struct {
	// Path of the file; created (0600) with its directory if missing.
	Path string `yaml:"path"`
	// Fsync after every batch: records survive a power loss once
	// acknowledged, at the cost of one fsync a batch. Default false: a
	// record is acknowledged once written to the file (it survives a crash
	// of the agent, not of the machine).
	Fsync bool `yaml:"fsync"`
}

// Validate checks the path.
func (c *Config) Validate() error {
	if c.Path == "" {
		return &plugins.KeyError{Key: "path", Err: errors.New("is required")}
	}
	return nil
}

func init() {
	plugins.RegisterOutput("file", plugins.Output{
		Config: func() any { return &Config{} },
		New: func(cfg any, env plugins.OutputEnv) (output.Output, error) {
			return New(cfg.(*Config))
		},
	})
}

// Output appends to a file.
type Output struct {
	cfg Config
	f   *os.File
	iov [][]byte // writev's list, reused
	// vec: the iovecs of one writev(2) call, reused (unix.Writev builds a
	// new array at every call).
	vec []unix.Iovec
}

// New checks the path; the file is opened (created 0600, with its
// directory) at the first write, so that `sidelog validate` creates nothing.
func New(c *Config) (*Output, error) {
	if st, err := os.Stat(c.Path); err == nil && st.IsDir() {
		return nil, &plugins.KeyError{Key: "path", Err: fmt.Errorf("%s is a directory", c.Path)}
	}
	return &Output{cfg: *c}, nil
}

func (o *Output) open() error {
	if err := os.MkdirAll(filepath.Dir(o.cfg.Path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(o.cfg.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	o.f = f
	return nil
}

// Keys: the file output reads no field directly.
func (o *Output) Keys() ([]string, bool) { return nil, false }

// Encode appends the record's JSON and a newline.
func (o *Output) Encode(dst []byte, e *event.Event) ([]byte, error) {
	dst = event.AppendJSON(dst, e)
	return append(dst, '\n'), nil
}

// Write appends the batch with one write call (and an fsync if configured).
func (o *Output) Write(_ context.Context, batch [][]byte) error {
	if o.f == nil {
		if err := o.open(); err != nil {
			return fmt.Errorf("open %s: %w", o.cfg.Path, err)
		}
	}
	if err := o.writev(batch); err != nil {
		return fmt.Errorf("write %s: %w", o.cfg.Path, err)
	}
	if o.cfg.Fsync {
		if err := o.f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", o.cfg.Path, err)
		}
	}
	return nil
}

// maxIovecs is the most records one writev takes (IOV_MAX is 1024).
const maxIovecs = 1024

// writev appends the records with writev(2), up to maxIovecs at a time,
// instead of copying them into one buffer first; a short write goes on
// from where it stopped.
func (o *Output) writev(batch [][]byte) error {
	rc, err := o.f.SyscallConn()
	if err != nil {
		return err
	}
	bufs := o.iov[:0]
	for _, r := range batch {
		if len(r) > 0 {
			bufs = append(bufs, r)
		}
	}
	all := bufs
	defer func() { clear(all); o.iov = all[:0]; clear(o.vec) }()
	for len(bufs) > 0 {
		part := bufs[:min(len(bufs), maxIovecs)]
		var n int
		var werr error
		vec := o.vec[:0]
		for _, b := range part {
			v := unix.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			vec = append(vec, v)
		}
		o.vec = vec
		if err := rc.Write(func(fd uintptr) bool {
			for {
				n, werr = writev(fd, vec)
				if werr != unix.EINTR {
					return true
				}
			}
		}); err != nil {
			return err
		}
		if werr != nil {
			return werr
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		// Drop what was written: whole records, then a partial one.
		for n > 0 && len(bufs) > 0 {
			if n >= len(bufs[0]) {
				n -= len(bufs[0])
				bufs = bufs[1:]
				continue
			}
			bufs[0] = bufs[0][n:]
			n = 0
		}
	}
	return nil
}

// writev is writev(2) of vec, which is not empty and holds no empty buffer.
func writev(fd uintptr, vec []unix.Iovec) (int, error) {
	n, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&vec[0])), uintptr(len(vec)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Close closes the file.
func (o *Output) Close(context.Context) error {
	if o.f == nil {
		return nil
	}
	return o.f.Close()
}
