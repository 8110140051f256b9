package output

import (
	"errors"
	"fmt"
	"time"
)

// Class says what to do with a failed record or batch.
type Class int

const (
	// Retryable: try again after a backoff (connection errors, 5xx).
	Retryable Class = iota
	// Throttled: try again, not before RetryAfter (429, Retry-After).
	Throttled
	// Permanent: never succeeds; the record goes to the dead-letter file.
	Permanent
)

func (c Class) String() string {
	switch c {
	case Retryable:
		return "retryable"
	case Throttled:
		return "throttled"
	case Permanent:
		return "permanent"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Error is a classified error.
type Error struct {
	Class      Class
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// PermanentError marks err as permanent.
func PermanentError(err error) error { return &Error{Class: Permanent, Err: err} }

// ThrottledError marks err as throttled with an optional Retry-After.
func ThrottledError(err error, after time.Duration) error {
	return &Error{Class: Throttled, RetryAfter: after, Err: err}
}

// Classify returns the class of err and its Retry-After (zero if none).
// Unclassified errors are retryable.
func Classify(err error) (Class, time.Duration) {
	var e *Error
	if errors.As(err, &e) {
		return e.Class, e.RetryAfter
	}
	return Retryable, 0
}

// BatchError reports per-record failures of a Write: Failed maps the index of
// a record in the batch to its (classified) error. Records not in Failed were
// delivered.
type BatchError struct {
	Failed map[int]error
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("%d records of the batch failed", len(e.Failed))
}
