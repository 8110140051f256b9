package event

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// appendMicros writes what strconv writes, for every value it takes, and
// takes the values computed from whole milliseconds.
func TestAppendMicrosMatchesStrconv(t *testing.T) {
	taken := 0
	check := func(f float64) {
		t.Helper()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return
		}
		got, ok := appendMicros([]byte("x"), f, math.Abs(f))
		if !ok {
			return
		}
		taken++
		if want := strconv.AppendFloat([]byte("x"), f, 'f', -1, 64); string(got) != string(want) {
			t.Fatalf("%v (%x): got %s, want %s", f, math.Float64bits(f), got, want)
		}
	}
	for ms := -2000; ms <= 200_000; ms++ {
		check(float64(ms) / 1000)
	}
	if taken < 202_000 {
		t.Fatalf("taken %d times for milliseconds / 1000", taken)
	}
	pow10 := []float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		check(math.Float64frombits(r.Uint64()))
		k := r.IntN(len(pow10))
		check(float64(r.Int64N(1<<53)) / pow10[k])
		check(float64(r.Int64N(1_000_000)) / pow10[k])
		check(float64(r.Int64N(1<<50)) / 1e6)
		check(-float64(r.Int64N(1<<50)) / 1e6)
		check(r.Float64())
		check(r.Float64() * 1e6)
		check(math.Nextafter(float64(r.Int64N(1<<20))/pow10[r.IntN(8)], math.Inf(1)))
		check(math.Nextafter(float64(r.Int64N(1<<20))/pow10[r.IntN(8)], 0))
	}
	for _, f := range []float64{1, 0.1, 0.2, 0.3, 0.1 + 0.2, 1e-6, 1.5e-6, 9.999999e-7, 0.000001, 0.0000015,
		1<<50/1e6 - 1e-6, 1 << 49 / 1e6, 1125899906.842623, 1125899906.842624, 1e9 + 0.5, 123456.789, 5e-324, math.MaxFloat64} {
		check(f)
		check(-f)
	}
	if _, ok := appendMicros(nil, math.Copysign(0, -1), 0); ok {
		t.Fatal("-0 taken")
	}
}

func BenchmarkAppendFloat(b *testing.B) {
	vals := []float64{0.059, 0.09, 0.049, 0.074, 1.234, 12.5}
	b.Run("event", func(b *testing.B) {
		var buf []byte
		for i := 0; b.Loop(); i++ {
			buf = appendFloat(buf[:0], vals[i%len(vals)])
		}
	})
	b.Run("strconv", func(b *testing.B) {
		var buf []byte
		for i := 0; b.Loop(); i++ {
			buf = strconv.AppendFloat(buf[:0], vals[i%len(vals)], 'f', -1, 64)
		}
	})
}
