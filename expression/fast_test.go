package expression

import (
	"testing"

	"github.com/sidelog/sidelog/event"
)

// The conditions answered without the VM give the VM's answer for every
// value a field can hold.
func TestFastConditionAgreesWithVM(t *testing.T) {
	cases := []struct {
		src  string
		fast bool
	}{
		{`level == "debug"`, true},
		{`"debug" == level`, true},
		{`level != "debug"`, true},
		{`level in ["warn", "error"]`, true},
		{`level in ["warn"]`, true},
		{`level in []`, true},
		{`level == 5`, false},
		{`level == other`, false},
		{`meta.input == "app"`, false},
		{`level not in ["warn"]`, false},
		{`lower(level) == "debug"`, false},
		{`$env.level == "debug"`, false},
	}
	values := []any{nil, "debug", "warn", "error", "", "DEBUG", 5, int64(5), 5.0, true, []any{"debug"}, map[string]any{"a": "debug"}}
	for _, c := range cases {
		p := MustCompile(c.src, Bool)
		if (p.fast != nil) != c.fast {
			t.Errorf("%s: fast path %v, want %v", c.src, p.fast != nil, c.fast)
		}
		vm := MustCompile(c.src, Bool)
		vm.fast = nil
		for _, v := range append(values, "absent") {
			fields := map[string]any{"other": "debug"}
			if s, ok := v.(string); !ok || s != "absent" {
				fields["level"] = v
			}
			got, gerr := p.Bool(&event.Event{Fields: fields})
			want, werr := vm.Bool(&event.Event{Fields: fields})
			if got != want || (gerr == nil) != (werr == nil) {
				t.Errorf("%s with level %#v: %v, %v; the VM says %v, %v", c.src, v, got, gerr, want, werr)
			}
		}
	}
}
