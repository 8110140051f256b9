package none

import (
	"testing"

	"github.com/sidelog/sidelog/event"
)

func FuzzNone(f *testing.F) {
	for _, s := range []string{"plain", "", "\xff\xfe"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		e := &event.Event{Raw: line}
		Parser{}.Parse(e)
		if e.Fields["message"] != string(line) || len(e.Fields) != 1 || e.Flags != 0 {
			t.Fatalf("%#v", e.Fields)
		}
	})
}
