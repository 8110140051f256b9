package modify

import "sync"

// valuePool keeps the slices that hold set values between evaluation and
// assignment, so that Apply does not allocate one per record.
type valuePool struct{ p sync.Pool }

func (s *valuePool) get(n int) *[]any {
	if b, ok := s.p.Get().(*[]any); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]any, n)
	return &b
}

func (s *valuePool) put(b *[]any) {
	clear(*b)
	s.p.Put(b)
}
