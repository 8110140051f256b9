// Package syncbuf is a text buffer that several goroutines may write to
// while another reads it: the tests' sink for a process's output or a
// logger's lines.
package syncbuf

import (
	"strings"
	"sync"
)

// Buffer collects what is written to it. The zero value is ready; it is
// safe for concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
