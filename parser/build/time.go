package build

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // timezone names resolve in a scratch image too
)

type timeKind uint8

const (
	timeRFC3339 timeKind = iota
	timeUnix
	timeUnixMS
	timeLayout
	timeISO8601
)

// timeParser reads the event time from a field value.
type timeParser struct {
	kind   timeKind
	layout string
	loc    *time.Location // for times without an offset (timezone)
}

// iso8601Layouts are tried in order by time_format: iso8601: a 'T' or a
// space between date and time, an offset as Z, +01:00, +0100 or +01, or
// none (then the timezone applies). Fractional seconds are accepted by
// time.Parse after the seconds of any layout.
var iso8601Layouts = []string{
	"2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05Z0700", "2006-01-02T15:04:05Z07", "2006-01-02T15:04:05",
	"2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05Z0700", "2006-01-02 15:04:05Z07", "2006-01-02 15:04:05",
	"2006-01-02T15:04:05 Z07:00", "2006-01-02 15:04:05 Z07:00", "2006-01-02T15:04:05 Z0700", "2006-01-02 15:04:05 Z0700",
}

// newTimeParser checks time_format: rfc3339 (fractions accepted), iso8601
// (rfc3339 plus a space separator, +0000 and +00 offsets, no offset),
// unix, unix_ms, or a Go layout; and timezone (an IANA name, Local or UTC).
func newTimeParser(format, timezone string) (timeParser, error) {
	loc := time.UTC
	if timezone != "" {
		l, err := time.LoadLocation(timezone)
		if err != nil {
			return timeParser{}, fmt.Errorf("timezone: %q is not a time zone name (e.g. Europe/Paris, America/New_York, UTC)", timezone)
		}
		loc = l
	}
	switch strings.ToLower(format) {
	case "", "rfc3339", "rfc3339nano":
		return timeParser{kind: timeRFC3339, loc: loc}, nil
	case "iso8601":
		return timeParser{kind: timeISO8601, loc: loc}, nil
	case "unix":
		return timeParser{kind: timeUnix, loc: loc}, nil
	case "unix_ms":
		return timeParser{kind: timeUnixMS, loc: loc}, nil
	}
	ref := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC) // not the reference time: a layout changes it
	if ref.Format(format) == format {
		return timeParser{}, fmt.Errorf("time_format: %q is neither rfc3339, iso8601, unix, unix_ms nor a Go layout (e.g. \"2006-01-02 15:04:05\")", format)
	}
	return timeParser{kind: timeLayout, layout: format, loc: loc}, nil
}

// parse returns the time held by v, or false.
func (p timeParser) parse(v any) (time.Time, bool) {
	switch p.kind {
	case timeRFC3339, timeLayout, timeISO8601:
		s, ok := v.(string)
		if !ok {
			return time.Time{}, false
		}
		loc := p.loc
		if loc == nil {
			loc = time.UTC
		}
		switch p.kind {
		case timeLayout:
			// A layout without a zone reads the time in the timezone.
			t, err := time.ParseInLocation(p.layout, s, loc)
			return t, err == nil
		case timeISO8601:
			for _, l := range iso8601Layouts {
				if t, err := time.ParseInLocation(l, s, loc); err == nil {
					return t, true
				}
			}
			return time.Time{}, false
		}
		t, err := time.Parse(time.RFC3339, s) // accepts fractional seconds
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
