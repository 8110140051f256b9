package keystr

import "testing"

func TestString(t *testing.T) {
	for _, c := range []struct {
		in   any
		want string
	}{
		{"a", "a"}, {nil, ""}, {3.0, "3"}, {2.5, "2.5"}, {7, "7"}, {int64(-1), "-1"}, {true, "true"},
		{[]any{1.0}, "[1]"},
	} {
		if got := String(c.in); got != c.want {
			t.Errorf("String(%#v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestHashStable(t *testing.T) {
	// FNV-1a 64 test vectors.
	if Hash("") != 0xcbf29ce484222325 || Hash("a") != 0xaf63dc4c8601ec8c {
		t.Fatalf("Hash: %x %x", Hash(""), Hash("a"))
	}
}
