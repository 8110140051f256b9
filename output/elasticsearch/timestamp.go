package elasticsearch

import (
	"slices"
	"time"
)

// appendTimestamp appends t in UTC as time.RFC3339Nano formats it
// (t.UTC().AppendFormat(dst, time.RFC3339Nano)): the date and time to the
// second, the fraction with its trailing zeros trimmed (none at all for a
// whole second), "Z". It does the calendar arithmetic itself, without the
// layout machinery, for years 0 to 9999; other years (which the layout
// writes with a sign or more digits) go through AppendFormat.
func appendTimestamp(dst []byte, t time.Time) []byte {
	sec := t.Unix()
	days, rem := sec/86400, sec%86400
	if rem < 0 {
		rem += 86400
		days--
	}
	// The civil date of a day number (the civil_from_days algorithm of
	// H. Hinnant's date library): eras of 400 years, each year counted
	// from March 1st so that February's leap day comes last.
	z := days + 719468
	if z < 0 || z >= 25*146097 {
		// Before 0000-03-01 or from 10000-03-01 on (Januaries and
		// Februaries of 10000 are caught below).
		return t.UTC().AppendFormat(dst, time.RFC3339Nano)
	}
	// From here on every quantity is small and not negative: unsigned
	// arithmetic, which divides by a constant without sign fixes.
	uz := uint64(z)
	era := uz / 146097
	doe := uz - era*146097                                 // [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // [0, 399]
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100) // [0, 365], from March 1st
	mp := (5*doy + 2) / 153                  // [0, 11], March = 0
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if mp >= 10 {
		m = mp - 9
		y++
	}
	if y > 9999 {
		return t.UTC().AppendFormat(dst, time.RFC3339Nano)
	}
	r := uint32(rem)
	// Written in place: the longest form, 2006-01-02T15:04:05.999999999Z,
	// has 30 bytes.
	at := len(dst)
	dst = slices.Grow(dst, 30)
	b := dst[at : at+30]
	put2(b[0:], uint32(y/100))
	put2(b[2:], uint32(y%100))
	b[4] = '-'
	put2(b[5:], uint32(m))
	b[7] = '-'
	put2(b[8:], uint32(d))
	b[10] = 'T'
	put2(b[11:], r/3600)
	b[13] = ':'
	put2(b[14:], r/60%60)
	b[16] = ':'
	put2(b[17:], r%60)
	n := 19
	if ns := uint32(t.Nanosecond()); ns != 0 {
		b[19] = '.'
		b[20] = byte('0' + ns/1e8)
		f := ns % 1e8
		put2(b[21:], f/1e6)
		put2(b[23:], f/1e4%100)
		put2(b[25:], f/100%100)
		put2(b[27:], f%100)
		n = 29
		for b[n-1] == '0' {
			n--
		}
	}
	b[n] = 'Z'
	return dst[:at+n+1]
}

// digitPairs holds "00" to "99".
const digitPairs = "00010203040506070809101112131415161718192021222324252627282930313233343536373839" +
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

// put2 writes v (< 100) as two digits at b[0:2].
func put2(b []byte, v uint32) {
	_ = b[1]
	b[0], b[1] = digitPairs[2*v], digitPairs[2*v+1]
}
