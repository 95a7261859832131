package envelope

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fast paths must agree with the reference parsers and formatters on everything.
func TestFastTimeMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 30000; i++ {
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
			want, winf, werr := refParseTimestamp(c.text, c.zone)
			gt, ginf, gerr := parseTimestampFast([]byte(c.text), c.zone)
			got, _ := gt.micros()
			if got != want || ginf != winf || (gerr == nil) != (werr == nil) {
				t.Fatalf("%q: fast %d,%d,%v; reference %d,%d,%v", c.text, got, ginf, gerr, want, winf, werr)
			}
			if werr == nil {
				for _, d := range []int{0, 3, 6} {
					if a, b := string(appendISOInstant(nil, instantOf(want), d)), refFormatISOInstant(want, d); a != b {
						t.Fatalf("%q digits %d: fast %s, reference %s", c.text, d, a, b)
					}
				}
				us := ((want % microsPerDay) + microsPerDay) % microsPerDay
				if a, b := string(appendClock(nil, us, 0, true)), refFormatClock(us, 0, true); a != b {
					t.Fatalf("clock %d: fast %s, reference %s", us, a, b)
				}
			}
		}
		date := s[:strings.IndexByte(s, ' ')]
		if strings.HasSuffix(s, " BC") {
			date += " BC"
		}
		wd, werr := refParseDate(date, 5874897)
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
			us, _, _ := refParseTimestamp(string(text), true)
			_ = refFormatISOInstant(us, 6)
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			ts, _, _ := parseTimestampFast(text, true)
			buf = appendISOInstant(buf[:0], ts, 6)
			_ = string(buf)
		}
	})
}

func BenchmarkNumericPrecise(b *testing.B) {
	o := DefaultOptions()
	ct, _ := o.numericType((12<<16 | 2) + 4)
	text := []byte("1234.56")
	b.ReportAllocs()
	for b.Loop() {
		v, _ := ct.conv(text)
		_ = v.(Decimal).Bytes()
	}
}

// The reference implementations, kept as the oracle of the fast ones.

// parseDate parses YYYY-MM-DD[ BC] into days since the epoch; time.Date says whether the date
// exists.
func refParseDate(s string, maxYear int64) (int64, error) {
	bc := strings.HasSuffix(s, " BC")
	s = strings.TrimSuffix(s, " BC")
	parts := strings.SplitN(s, "-", 3)
	if len(parts) != 3 || len(parts[0]) < 4 || len(parts[1]) != 2 || len(parts[2]) != 2 {
		return 0, fmt.Errorf("invalid date %q", s)
	}
	y, err1 := strconv.ParseInt(parts[0], 10, 64)
	m, err2 := strconv.ParseInt(parts[1], 10, 64)
	d, err3 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || y < 1 || (bc && y > 4714) || (!bc && y > maxYear) {
		return 0, fmt.Errorf("invalid date %q", s)
	}
	if bc {
		y = 1 - y
	}
	if tm := time.Date(int(y), time.Month(m), int(d), 0, 0, 0, 0, time.UTC); tm.Year() != int(y) || tm.Month() != time.Month(m) || tm.Day() != int(d) {
		return 0, fmt.Errorf("no date %q", s)
	}
	return daysFromCivil(y, m, d), nil
}

// parseClock parses HH:MM:SS[.ffffff] into microseconds of the day (24:00:00 is allowed).
func refParseClock(s string) (int64, error) {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0, fmt.Errorf("invalid time %q", s)
	}
	h, err1 := strconv.Atoi(s[0:2])
	m, err2 := strconv.Atoi(s[3:5])
	sec, err3 := strconv.Atoi(s[6:8])
	if err1 != nil || err2 != nil || err3 != nil || h > 24 || m > 59 || sec > 59 {
		return 0, fmt.Errorf("invalid time %q", s)
	}
	us := int64(0)
	if len(s) > 8 {
		if s[8] != '.' {
			return 0, fmt.Errorf("invalid time %q", s)
		}
		frac := s[9:]
		if len(frac) > 6 {
			frac = frac[:6]
		}
		f, err := strconv.Atoi(frac)
		if err != nil {
			return 0, fmt.Errorf("invalid time %q", s)
		}
		for i := len(frac); i < 6; i++ {
			f *= 10
		}
		us = int64(f)
	}
	us += (int64(h)*3600 + int64(m)*60 + int64(sec)) * 1_000_000
	if us > microsPerDay {
		return 0, fmt.Errorf("invalid time %q", s)
	}
	return us, nil
}

// parseTimestamp parses "YYYY-MM-DD HH:MM:SS[.f][+offset][ BC]" into microseconds since the
// epoch, UTC; infinite is ±1 for 'infinity' and '-infinity'.
func refParseTimestamp(s string, withZone bool) (micros int64, infinite int, err error) {
	switch s {
	case "infinity":
		return 0, 1, nil
	case "-infinity":
		return 0, -1, nil
	}
	bc := strings.HasSuffix(s, " BC")
	s = strings.TrimSuffix(s, " BC")
	var offset int64
	if withZone {
		if s, offset, err = refSplitOffset(s); err != nil {
			return 0, 0, err
		}
	}
	date, clock, ok := strings.Cut(s, " ")
	if !ok {
		return 0, 0, fmt.Errorf("invalid timestamp %q", s)
	}
	if bc {
		date += " BC"
	}
	days, err := refParseDate(date, 294276)
	if err != nil {
		return 0, 0, err
	}
	us, err := refParseClock(clock)
	if err != nil {
		return 0, 0, err
	}
	return days*microsPerDay + us - offset*1_000_000, 0, nil
}

// refSplitOffset splits a trailing +HH[:MM[:SS]] / -HH... UTC offset, up to ±15:59:59, and
// returns it in seconds.
func refSplitOffset(s string) (string, int64, error) {
	i := strings.LastIndexAny(s, "+-")
	if i < 8 { // the sign of a date part or nothing
		return s, 0, fmt.Errorf("missing UTC offset in %q", s)
	}
	sign := int64(1)
	if s[i] == '-' {
		sign = -1
	}
	parts := strings.Split(s[i+1:], ":")
	if len(parts) > 3 {
		return s, 0, fmt.Errorf("invalid UTC offset in %q", s)
	}
	var secs int64
	for n, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || len(p) != 2 || v > []int64{15, 59, 59}[n] {
			return s, 0, fmt.Errorf("invalid UTC offset in %q", s)
		}
		secs += v * []int64{3600, 60, 1}[n]
	}
	return s[:i], sign * secs, nil
}

// formatISOInstant writes micros since the epoch as yyyy-MM-ddTHH:mm:ss[.fraction]Z with
// exactly digits fraction digits (0 to 6), the way Debezium's ZonedTimestamp does.
func refFormatISOInstant(micros int64, digits int) string {
	days := floorDiv(micros, microsPerDay)
	us := micros - days*microsPerDay
	var b strings.Builder
	b.WriteString(refFormatISODate(days))
	b.WriteByte('T')
	b.WriteString(refFormatClock(us, digits, false))
	b.WriteByte('Z')
	return b.String()
}

// formatISODate writes a date as java.time.LocalDate.toString does: four-digit years, a sign
// for years past 9999 or before year 0.
func refFormatISODate(days int64) string {
	y, m, d := CivilFromDays(days)
	var ys string
	switch {
	case y > 9999:
		ys = "+" + strconv.FormatInt(y, 10)
	case y < 0:
		ys = fmt.Sprintf("-%04d", -y)
	default:
		ys = fmt.Sprintf("%04d", y)
	}
	return fmt.Sprintf("%s-%02d-%02d", ys, m, d)
}

// formatClock writes microseconds of the day as HH:mm:ss with a fraction of exactly digits
// digits, or, when minimal, the fewest digits needed (none for whole seconds).
func refFormatClock(us int64, digits int, minimal bool) string {
	secs := us / 1_000_000
	frac := us % 1_000_000
	s := fmt.Sprintf("%02d:%02d:%02d", secs/3600, secs/60%60, secs%60)
	if minimal {
		if frac == 0 {
			return s
		}
		f := strings.TrimRight(fmt.Sprintf("%06d", frac), "0")
		return s + "." + f
	}
	if digits > 0 {
		f := fmt.Sprintf("%06d", frac)[:digits]
		return s + "." + f
	}
	return s
}

func TestSmallDecimalMatchesBig(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		n := r.Int64N(1_000_000_000_000_000_000) - r.Int64N(1_000_000_000_000_000_000)
		text := strconv.FormatInt(n, 10)
		if k := r.IntN(len(text)); k > 0 && text[k-1] != '-' && r.IntN(3) > 0 {
			text = text[:k] + "." + text[k:]
		}
		got, _, err := parseDecimal([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		intPart, frac, _ := strings.Cut(text, ".")
		want, _ := new(big.Int).SetString(intPart+frac, 10)
		if got.Unscaled.Cmp(want) != 0 || got.Scale != int32(len(frac)) {
			t.Fatalf("%s: got %s e-%d", text, got.Unscaled, got.Scale)
		}
		for _, sc := range []int32{0, 2, 6, 20} {
			a, b := got.rescale(sc), refRescale(got, sc)
			if a.Unscaled.Cmp(b.Unscaled) != 0 || a.Scale != b.Scale {
				t.Fatalf("%s rescale(%d): got %s, want %s", text, sc, a.Unscaled, b.Unscaled)
			}
			if x, y := a.Bytes(), twosComplement(a.Unscaled); string(x) != string(y) {
				t.Fatalf("%s: bytes %x, want %x", a.Unscaled, x, y)
			}
		}
	}
}

// refRescale is rescale with big.Int arithmetic only.
func refRescale(d Decimal, scale int32) Decimal {
	if scale >= d.Scale {
		m := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale-d.Scale)), nil)
		return Decimal{Unscaled: m.Mul(m, d.Unscaled), Scale: scale}
	}
	return d.rescale(scale)
}
