package envelope

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// The fast paths must agree with the reference parsers and formatters on everything.
func TestFastTimeMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		y := 1 + r.IntN(12000)
		s := fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d", y, 1+r.IntN(12), 1+r.IntN(28), r.IntN(25), r.IntN(60), r.IntN(60))
		if r.IntN(2) == 0 {
			s += "." + fmt.Sprintf("%06d", r.IntN(1000000))[:1+r.IntN(6)]
		}
		tz := s
		switch r.IntN(3) {
		case 0:
			tz += "+00"
		case 1:
			tz += fmt.Sprintf("-%02d:%02d", r.IntN(15), r.IntN(60))
		default:
			tz += fmt.Sprintf("+%02d:%02d:%02d", r.IntN(15), r.IntN(60), r.IntN(60))
		}
		if r.IntN(10) == 0 {
			s += " BC"
			tz += " BC"
		}
		for _, c := range []struct {
			text string
			zone bool
		}{{s, false}, {tz, true}} {
			want, winf, werr := parseTimestamp(c.text, c.zone)
			got, ginf, gerr := parseTimestampFast([]byte(c.text), c.zone)
			if got != want || ginf != winf || (gerr == nil) != (werr == nil) {
				t.Fatalf("%q: fast %d,%d,%v; reference %d,%d,%v", c.text, got, ginf, gerr, want, winf, werr)
			}
			if werr == nil {
				for _, d := range []int{0, 3, 6} {
					if a, b := string(appendISOInstant(nil, want, d)), formatISOInstant(want, d); a != b {
						t.Fatalf("%q digits %d: fast %s, reference %s", c.text, d, a, b)
					}
				}
				us := ((want % microsPerDay) + microsPerDay) % microsPerDay
				if a, b := string(appendClock(nil, us, 0, true)), formatClock(us, 0, true); a != b {
					t.Fatalf("clock %d: fast %s, reference %s", us, a, b)
				}
			}
		}
		date := s[:strings.IndexByte(s, ' ')]
		if strings.HasSuffix(s, " BC") {
			date += " BC"
		}
		wd, werr := parseDate(date)
		gd, gerr := parseDateFast([]byte(date))
		if wd != gd || (werr == nil) != (gerr == nil) {
			t.Fatalf("date %q: fast %d %v, reference %d %v", date, gd, gerr, wd, werr)
		}
	}
	for _, bad := range []string{"", "2020-01-01", "2020-01-01 1:00:00", "2020-01-01 10:00:00+", "x020-01-01 10:00:00", "2020-01-01 10:00:00.+00"} {
		if _, _, err := parseTimestampFast([]byte(bad), true); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func BenchmarkTimestamptz(b *testing.B) {
	text := []byte("2026-11-27 03:10:15.123456+00")
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			us, _, _ := parseTimestamp(string(text), true)
			_ = formatISOInstant(us, 6)
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			us, _, _ := parseTimestampFast(text, true)
			buf = appendISOInstant(buf[:0], us, 6)
			_ = string(buf)
		}
	})
}
