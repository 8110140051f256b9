package build

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

type timeKind uint8

const (
	timeRFC3339 timeKind = iota
	timeUnix
	timeUnixMS
	timeLayout
)

// timeParser reads the event time from a field value.
type timeParser struct {
	kind   timeKind
	layout string
}

// newTimeParser checks time_format: rfc3339 (fractions accepted), unix,
// unix_ms, or a Go layout.
func newTimeParser(format string) (timeParser, error) {
	switch strings.ToLower(format) {
	case "", "rfc3339", "rfc3339nano", "iso8601":
		return timeParser{kind: timeRFC3339}, nil
	case "unix":
		return timeParser{kind: timeUnix}, nil
	case "unix_ms":
		return timeParser{kind: timeUnixMS}, nil
	}
	ref := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC) // not the reference time: a layout changes it
	if ref.Format(format) == format {
		return timeParser{}, fmt.Errorf("time_format: %q is neither rfc3339, unix, unix_ms nor a Go layout (e.g. \"2006-01-02 15:04:05\")", format)
	}
	return timeParser{kind: timeLayout, layout: format}, nil
}

// parse returns the time held by v, or false.
func (p timeParser) parse(v any) (time.Time, bool) {
	switch p.kind {
	case timeRFC3339, timeLayout:
		s, ok := v.(string)
		if !ok {
			return time.Time{}, false
		}
		layout := time.RFC3339 // accepts fractional seconds when parsing
		if p.kind == timeLayout {
			layout = p.layout
		}
		t, err := time.Parse(layout, s)
		return t, err == nil
	}
	scale := int64(1) // digits are seconds
	if p.kind == timeUnixMS {
		scale = 1000
	}
	switch x := v.(type) {
	case int64:
		return epoch(x, 0, scale), true
	case int:
		return epoch(int64(x), 0, scale), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > 1e15*float64(scale) {
			return time.Time{}, false
		}
		whole := math.Floor(x)
		frac := int64(math.Round((x - whole) * 1e9))
		return epoch(int64(whole), frac, scale), true
	case string:
		intPart, fracPart, _ := strings.Cut(x, ".")
		n, err := strconv.ParseInt(intPart, 10, 64)
		if err != nil || (x != "" && x[0] == '-' && fracPart != "") {
			return time.Time{}, false
		}
		var frac int64
		if fracPart != "" {
			if len(fracPart) > 9 {
				fracPart = fracPart[:9]
			}
			f, err := strconv.ParseUint(fracPart, 10, 32)
			if err != nil {
				return time.Time{}, false
			}
			frac = int64(f)
			for i := len(fracPart); i < 9; i++ {
				frac *= 10
			}
		}
		return epoch(n, frac, scale), true
	}
	return time.Time{}, false
}

// epoch is whole units plus frac/1e9 of a unit, a unit being 1/scale s.
func epoch(whole, frac, scale int64) time.Time {
	if scale == 1 {
		return time.Unix(whole, frac).UTC()
	}
	ns := whole%scale*int64(time.Second)/scale + frac/scale
	return time.Unix(whole/scale, ns).UTC()
}
