package envelope

import (
	"errors"
	"math"
)

// Allocation-free parsing and formatting of PostgreSQL's date/time text, for the hot path.
// They accept exactly what parseDate, parseClock and parseTimestamp accept.

var errTimeSyntax = errors.New("invalid date/time text")

// digits parses b[i:j] as a non-negative decimal number.
func digits(b []byte, i, j int) (int64, bool) {
	if i >= j || j > len(b) {
		return 0, false
	}
	var n int64
	for ; i < j; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// PostgreSQL's range of dates and timestamps is 4714-11-24 BC to 5874897-12-31 AD for dates
// and to 294276-12-31 AD for timestamps. The parsers check years (not the day within 4714
// BC), which keeps every computation below within int64 and every date within int32 days.
const (
	maxYearBC        = 4714
	maxDateYear      = 5874897
	maxTimestampYear = 294276
)

// scanDate parses YYYY-MM-DD (years of 4 to 7 digits) at the start of b and returns the year
// (as written: BC is applied by civilDays), month, day and the length consumed. It refuses
// months and days that do not exist and year 0, which PostgreSQL never writes.
func scanDate(b []byte) (y, m, d int64, n int, ok bool) {
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i < 4 || i > 7 || i+6 > len(b) || b[i] != '-' || b[i+3] != '-' {
		return 0, 0, 0, 0, false
	}
	y, ok1 := digits(b, 0, i)
	m, ok2 := digits(b, i+1, i+3)
	d, ok3 := digits(b, i+4, i+6)
	if !ok1 || !ok2 || !ok3 || y < 1 || m < 1 || m > 12 || d < 1 {
		return 0, 0, 0, 0, false
	}
	return y, m, d, i + 6, true
}

// civilDays returns the days since the epoch of a date scanned by scanDate, or false when the
// date does not exist (the 29th of February of a common year) or its year is out of range.
func civilDays(y, m, d int64, bc bool, maxYear int64) (int64, bool) {
	if bc {
		if y > maxYearBC {
			return 0, false
		}
		y = 1 - y // astronomical: 1 BC is year 0
	} else if y > maxYear {
		return 0, false
	}
	if d > daysInMonth(y, m) {
		return 0, false
	}
	return daysFromCivil(y, m, d), true
}

// daysInMonth is the length of month m of the proleptic Gregorian (astronomical) year y.
func daysInMonth(y, m int64) int64 {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// scanClock parses HH:MM:SS[.ffffff...] at the start of b into microseconds of the day. Hours
// go to 23, minutes and seconds to 59; 24:00:00 (with no fraction) is the end of the day.
func scanClock(b []byte) (us int64, n int, ok bool) {
	if len(b) < 8 || b[2] != ':' || b[5] != ':' {
		return 0, 0, false
	}
	h, ok1 := digits(b, 0, 2)
	m, ok2 := digits(b, 3, 5)
	s, ok3 := digits(b, 6, 8)
	if !ok1 || !ok2 || !ok3 || h > 24 || m > 59 || s > 59 {
		return 0, 0, false
	}
	us = (h*3600 + m*60 + s) * 1_000_000
	n = 8
	if n < len(b) && b[n] == '.' {
		n++
		var frac, scale int64 = 0, 100_000
		start := n
		for n < len(b) && b[n] >= '0' && b[n] <= '9' {
			if scale > 0 {
				frac += int64(b[n]-'0') * scale
				scale /= 10
			}
			n++
		}
		if n == start {
			return 0, 0, false
		}
		us += frac
	}
	if us > microsPerDay {
		return 0, 0, false
	}
	return us, n, true
}

// scanOffset parses +HH[:MM[:SS]] / -HH... into seconds, up to PostgreSQL's limit of
// ±15:59:59.
func scanOffset(b []byte) (secs int64, n int, ok bool) {
	if len(b) < 3 || (b[0] != '+' && b[0] != '-') {
		return 0, 0, false
	}
	sign := int64(1)
	if b[0] == '-' {
		sign = -1
	}
	h, ok := digits(b, 1, 3)
	if !ok || h > 15 {
		return 0, 0, false
	}
	secs, n = h*3600, 3
	for _, mul := range [2]int64{60, 1} {
		if n+3 <= len(b) && b[n] == ':' {
			v, ok := digits(b, n+1, n+3)
			if !ok || v > 59 {
				return 0, 0, false
			}
			secs += v * mul
			n += 3
		}
	}
	return sign * secs, n, true
}

// instant is a point in time as days since the epoch and microseconds into that day (UTC,
// 0 to microsPerDay-1). It holds every timestamp PostgreSQL does, which microseconds since
// the epoch do not: those overflow int64 past about 294247 AD.
type instant struct{ days, us int64 }

// micros returns the microseconds since the epoch, or false when they do not fit an int64.
func (t instant) micros() (int64, bool) {
	const maxDays = math.MaxInt64 / microsPerDay
	if t.days > maxDays || t.days < -maxDays-1 {
		return 0, false
	}
	d := t.days * microsPerDay
	if d > 0 && t.us > math.MaxInt64-d {
		return 0, false
	}
	return d + t.us, true
}

// millis returns the milliseconds since the epoch, rounded down; every instant has them.
func (t instant) millis() int64 { return t.days*86_400_000 + t.us/1000 }

// instantOf is the instant of microseconds since the epoch.
func instantOf(micros int64) instant {
	days := floorDiv(micros, microsPerDay)
	return instant{days: days, us: micros - days*microsPerDay}
}

// parseTimestampFast is parseTimestamp on bytes, without allocating.
func parseTimestampFast(b []byte, withZone bool) (t instant, infinite int, err error) {
	switch string(b) { // no allocation: the compiler compares in place
	case "infinity":
		return instant{}, 1, nil
	case "-infinity":
		return instant{}, -1, nil
	}
	bc := len(b) > 3 && string(b[len(b)-3:]) == " BC"
	if bc {
		b = b[:len(b)-3]
	}
	y, m, d, n, ok := scanDate(b)
	if !ok || n >= len(b) || b[n] != ' ' {
		return instant{}, 0, errTimeSyntax
	}
	days, ok := civilDays(y, m, d, bc, maxTimestampYear)
	if !ok {
		return instant{}, 0, errTimeSyntax
	}
	us, cn, ok := scanClock(b[n+1:])
	if !ok {
		return instant{}, 0, errTimeSyntax
	}
	rest := b[n+1+cn:]
	var off int64
	if withZone {
		var on int
		if off, on, ok = scanOffset(rest); !ok {
			return instant{}, 0, errTimeSyntax
		}
		rest = rest[on:]
	}
	if len(rest) != 0 {
		return instant{}, 0, errTimeSyntax
	}
	us -= off * 1_000_000 // within a day and a bit either way
	shift := floorDiv(us, microsPerDay)
	return instant{days: days + shift, us: us - shift*microsPerDay}, 0, nil
}

// parseDateFast is parseDate on bytes, without allocating.
func parseDateFast(b []byte) (int64, error) {
	bc := len(b) > 3 && string(b[len(b)-3:]) == " BC"
	if bc {
		b = b[:len(b)-3]
	}
	y, m, d, n, ok := scanDate(b)
	if !ok || n != len(b) {
		return 0, errTimeSyntax
	}
	days, ok := civilDays(y, m, d, bc, maxDateYear)
	if !ok {
		return 0, errTimeSyntax
	}
	return days, nil
}

func append2(dst []byte, v int64) []byte { return append(dst, byte('0'+v/10), byte('0'+v%10)) }

// appendISODate appends a date as java.time.LocalDate.toString writes it.
func appendISODate(dst []byte, days int64) []byte {
	y, m, d := CivilFromDays(days)
	switch {
	case y > 9999:
		dst = append(dst, '+')
		dst = appendInt(dst, y)
	case y < 0:
		dst = append(dst, '-')
		dst = appendPadded(dst, -y, 4)
	default:
		dst = appendPadded(dst, y, 4)
	}
	dst = append(dst, '-')
	dst = append2(dst, m)
	dst = append(dst, '-')
	return append2(dst, d)
}

func appendInt(dst []byte, v int64) []byte {
	var buf [20]byte
	i := len(buf)
	for v >= 10 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	i--
	buf[i] = byte('0' + v)
	return append(dst, buf[i:]...)
}

func appendPadded(dst []byte, v int64, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for v > 0 || len(buf)-i < width {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[i:]...)
}

// appendClock appends microseconds of the day as HH:mm:ss with exactly digits fraction digits,
// or with the fewest needed when minimal.
func appendClock(dst []byte, us int64, digits int, minimal bool) []byte {
	secs, frac := us/1_000_000, us%1_000_000
	dst = append2(dst, secs/3600)
	dst = append(dst, ':')
	dst = append2(dst, secs/60%60)
	dst = append(dst, ':')
	dst = append2(dst, secs%60)
	if minimal {
		if frac == 0 {
			return dst
		}
		digits = 6
		for frac%10 == 0 {
			frac /= 10
			digits--
		}
		dst = append(dst, '.')
		return appendPadded(dst, frac, digits)
	}
	if digits > 0 {
		dst = append(dst, '.')
		dst = appendPadded(dst, frac/pow10[6-digits], digits)
	}
	return dst
}

var pow10 = [...]int64{1, 10, 100, 1000, 10000, 100000, 1000000}

// appendISOInstant appends an instant as yyyy-MM-ddTHH:mm:ss[.f]Z.
func appendISOInstant(dst []byte, t instant, digits int) []byte {
	dst = appendISODate(dst, t.days)
	dst = append(dst, 'T')
	dst = appendClock(dst, t.us, digits, false)
	return append(dst, 'Z')
}
