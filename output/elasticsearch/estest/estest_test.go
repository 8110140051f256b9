package estest

import (
	"reflect"
	"testing"
)

// TestFastActionAgreesWithSlowPath: the fast parser accepts only what the
// strict one accepts, with the same result, and declines the rest.
func TestFastActionAgreesWithSlowPath(t *testing.T) {
	lines := []string{
		`{"index":{"_index":"a","_id":"x1","pipeline":"p"}}`,
		`{"create":{"_index":"logs-a-b"}}`,
		`{"delete":{"_index":"a","_id":"1"}}`,
		`{"index":{}}`,
		`{"index":{"_index":"a\"b"}}`,
		`{"index":{"_index":"a","bogus":"x"}}`,
		`{"index":{"_index":"a",}}`,
		`{"index":{"_index":"a"}}}`,
		`{"index":{"_index":"a","routing":"r"}}`,
		`{"index":{"_index":1}}`,
		`{"index":{"_index":"a"},"create":{}}`,
		` {"index":{"_index":"a"}}`,
	}
	for _, l := range lines {
		fast, ok := fastAction([]byte(l))
		// The slow path, bypassing the fast one.
		slowM, slowErr := parseActionSlow([]byte(l), features{})
		if ok {
			if slowErr != "" {
				t.Errorf("%s: fast path accepted what the strict one refuses (%s)", l, slowErr)
			} else if !reflect.DeepEqual(fast, slowM) {
				t.Errorf("%s: fast %+v, slow %+v", l, fast, slowM)
			}
		}
	}
}
