package lines

import (
	"reflect"
	"testing"
)

// Issue 20: a cut never splits a UTF-8 character.
func TestCutUTF8Safe(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"abcdef", 4, "abcd"},
		{"ab\u00e9cd", 3, "ab"}, // é is 2 bytes: not cut in half
		{"ab\u00e9cd", 4, "ab\u00e9"},
		{"a\u20acb", 2, "a"}, // € is 3 bytes
		{"a\u20acb", 3, "a"},
		{"a\u20acb", 4, "a\u20ac"},
		{"a\U0001F600b", 4, "a"}, // 4-byte emoji
		{"a\U0001F600b", 5, "a\U0001F600"},
		{"ab\xff\xfe\xfd", 3, "ab\xff"}, // invalid bytes: cut as they come
		{"\x80\x80\x80\x80\x80", 2, "\x80\x80"},
	} {
		got := string(Cut([]byte(tc.in), tc.max))
		if got != tc.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
		if len(got) > tc.max {
			t.Errorf("Cut(%q, %d) longer than the limit", tc.in, tc.max)
		}
	}
}

func TestSplit(t *testing.T) {
	type rec struct {
		Line string
		End  int64
		Cut  bool
	}
	var got []rec
	Split([]byte("a\n\n\r\nbb\r\n   \ncccccc\nlast"), 4, func(l []byte, end int64, cut bool) {
		got = append(got, rec{string(l), end, cut})
	})
	want := []rec{{"a", 2, false}, {"bb", 9, false}, {"   ", 13, false}, {"cccc", 20, true}, {"last", 24, false}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for in, want := range map[string]bool{"": false, "\r": false, "x\r": true, " ": true} {
		if _, ok := Trim([]byte(in)); ok != want {
			t.Errorf("Trim(%q) kept = %v", in, ok)
		}
	}
}
