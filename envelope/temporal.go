package envelope

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// PostgreSQL's text forms of dates and times (DateStyle ISO, TimeZone UTC, IntervalStyle
// postgres, as the replication connection sets them) are parsed by hand: time.Parse cannot
// read years past 9999, BC dates, or 24:00:00, all of which PostgreSQL allows.

const (
	microsPerDay = 86_400_000_000
	// The values Debezium gives timestamp 'infinity' and '-infinity' (PostgreSQL's own
	// infinity timestamps converted by the JDBC driver).
	timestampPosInfinityMicros = 9223372036825200000
	timestampNegInfinityMicros = -9223372036832400000
)

// daysFromCivil returns days since 1970-01-01 of a proleptic Gregorian date (astronomical
// year: 1 BC is year 0), like java.time.LocalDate.
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// CivilFromDays is the proleptic Gregorian date of a day number (days since 1970-01-01; year 0
// is 1 BC): the inverse of daysFromCivil, for readers of Debezium dates too.
func CivilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era = (z - 146096) / 146097
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

// parseDate parses YYYY-MM-DD[ BC] into days since the epoch.
func parseDate(b []byte) (int64, error) {
	d, err := parseDateFast(b)
	if err != nil {
		return 0, fmt.Errorf("invalid date %s", quoteText(b))
	}
	return d, nil
}

// parseClock parses HH:MM:SS[.ffffff] into microseconds of the day (24:00:00 is allowed).
func parseClock(b []byte) (int64, error) {
	us, n, ok := scanClock(b)
	if !ok || n != len(b) {
		return 0, fmt.Errorf("invalid time %s", quoteText(b))
	}
	return us, nil
}

// parseTimestamp parses "YYYY-MM-DD HH:MM:SS[.f][+offset][ BC]" into an instant (UTC);
// infinite is ±1 for 'infinity' and '-infinity'.
func parseTimestamp(b []byte, withZone bool) (t instant, infinite int, err error) {
	t, infinite, err = parseTimestampFast(b, withZone)
	if err != nil {
		return instant{}, 0, fmt.Errorf("invalid timestamp %s", quoteText(b))
	}
	return t, infinite, nil
}

// formatISOInstant writes an instant as yyyy-MM-ddTHH:mm:ss[.fraction]Z with exactly digits
// fraction digits (0 to 6), the way Debezium's ZonedTimestamp does.
func formatISOInstant(t instant, digits int) string {
	var buf [48]byte
	return string(appendISOInstant(buf[:0], t, digits))
}

// convTimestamptz converts timestamptz text to Debezium's ZonedTimestamp (ISO instant with p
// fraction digits), in a's memory.
func convTimestamptz(a *arena, b []byte, p int) (any, error) {
	ts, inf, err := parseTimestamp(b, true)
	switch {
	case err != nil:
		return nil, err
	case inf > 0:
		return "infinity", nil
	case inf < 0:
		return "-infinity", nil
	}
	var buf [48]byte
	return a.str(appendISOInstant(buf[:0], ts, p)), nil
}

// formatISODate writes a date as java.time.LocalDate.toString does: four-digit years, a sign
// for years past 9999 or before year 0.
func formatISODate(days int64) string {
	var buf [24]byte
	return string(appendISODate(buf[:0], days))
}

// formatClock writes microseconds of the day as HH:mm:ss with a fraction of exactly digits
// digits, or, when minimal, the fewest digits needed (none for whole seconds).
func formatClock(us int64, digits int, minimal bool) string {
	var buf [24]byte
	return string(appendClock(buf[:0], us, digits, minimal))
}

// floorDiv is division rounding toward negative infinity, as Java's Math.floorDiv.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// temporalPrecision returns the fractional digits of a time/timestamp typmod: 6 if unset, and,
// as PostgreSQL reduces a larger precision to 6, for any typmod a Relation message could claim.
func temporalPrecision(typmod int32) int {
	if typmod < 0 || typmod > 6 {
		return 6
	}
	return int(typmod)
}

func (o *Options) temporalType(name string, typmod int32) (columnType, error) {
	p := temporalPrecision(typmod)
	mode := o.TimePrecisionMode
	switch name {
	case "date":
		return o.dateType(mode), nil
	case "time":
		return o.timeType(mode, p), nil
	case "timestamp":
		return o.timestampType(mode, p), nil
	case "timestamptz":
		return columnType{schema: named(String, NameZonedTS, 1), conv: func(b []byte) (any, error) {
			return convTimestamptz(nil, b, p)
		}}.withArena(func(a *arena, b []byte) (any, error) {
			return convTimestamptz(a, b, p)
		}), nil
	case "timetz":
		return columnType{schema: named(String, NameZonedTime, 1), conv: convZonedTime}, nil
	case "interval":
		return o.intervalType(), nil
	}
	return columnType{}, fmt.Errorf("not a temporal type: %s", name)
}

func (o *Options) dateType(mode TimePrecisionMode) columnType {
	days := func(b []byte) (int64, error) {
		// Debezium's POSITIVE_INFINITY_LOCAL_DATE and NEGATIVE_INFINITY_LOCAL_DATE: dates
		// next to int32's minimum of days (infinity is the earlier one, as in Debezium).
		switch string(b) {
		case "infinity":
			return daysFromCivil(-5877611, 6, 21), nil
		case "-infinity":
			return daysFromCivil(-5877611, 6, 22), nil
		}
		return parseDate(b)
	}
	switch mode {
	case TimeConnect:
		return columnType{schema: named(Int32, LogicalDate, 1), conv: func(b []byte) (any, error) {
			d, err := days(b)
			return int32(d), err
		}}
	case TimeISOString:
		// ISO_OFFSET_DATE at UTC: 2020-02-29Z.
		return columnType{schema: named(String, NameIsoDate, 1), conv: func(b []byte) (any, error) {
			d, err := days(b)
			return formatISODate(d) + "Z", err
		}}
	}
	return columnType{schema: named(Int32, NameDate, 1), conv: func(b []byte) (any, error) {
		d, err := days(b)
		return int32(d), err
	}}
}

func (o *Options) timeType(mode TimePrecisionMode, p int) columnType {
	switch {
	case mode == TimeConnect:
		return columnType{schema: named(Int32, LogicalTime, 1), conv: func(b []byte) (any, error) {
			us, err := parseClock(b)
			return int32(us / 1000), err
		}}
	case mode == TimeISOString:
		// ISO_OFFSET_TIME of a LocalTime: 24:00:00 wraps to 00:00:00.
		return columnType{schema: named(String, NameIsoTime, 1), conv: func(b []byte) (any, error) {
			us, err := parseClock(b)
			return formatClock(us%microsPerDay, 0, true) + "Z", err
		}}
	case mode == TimeNanoseconds:
		return columnType{schema: named(Int64, NameNanoTime, 1), conv: func(b []byte) (any, error) {
			us, err := parseClock(b)
			return us * 1000, err
		}}
	case mode == TimeAdaptive && p <= 3:
		return columnType{schema: named(Int32, NameTime, 1), conv: func(b []byte) (any, error) {
			us, err := parseClock(b)
			return int32(us / 1000), err
		}}
	}
	return columnType{schema: named(Int64, NameMicroTime, 1), conv: func(b []byte) (any, error) {
		return parseClock(b)
	}}
}

func (o *Options) timestampType(mode TimePrecisionMode, p int) columnType {
	parse := func(b []byte) (instant, int, error) { return parseTimestamp(b, false) }
	// Microseconds since the epoch (and nanoseconds) overflow an int64 in the last years
	// PostgreSQL allows (past about 294247 AD for microseconds, outside 1677-2262 for
	// nanoseconds), and Debezium's exact arithmetic then leaves the field null: so do we.
	micros := func(b []byte) (any, error) {
		ts, inf, err := parse(b)
		switch {
		case err != nil:
			return nil, err
		case inf > 0:
			return int64(timestampPosInfinityMicros), nil
		case inf < 0:
			return int64(timestampNegInfinityMicros), nil
		}
		if us, ok := ts.micros(); ok {
			return us, nil
		}
		return nil, nil
	}
	millis := func(b []byte) (any, error) {
		ts, inf, err := parse(b)
		switch {
		case err != nil:
			return nil, err
		case inf > 0:
			return floorDiv(timestampPosInfinityMicros, 1000), nil
		case inf < 0:
			return floorDiv(timestampNegInfinityMicros, 1000), nil
		}
		return ts.millis(), nil
	}
	switch {
	case mode == TimeConnect:
		return columnType{schema: named(Int64, LogicalTimestamp, 1), conv: millis}
	case mode == TimeISOString:
		// ISO_OFFSET_DATE_TIME at UTC, the fraction as short as it can be.
		return columnType{schema: named(String, NameIsoTimestamp, 1), conv: func(b []byte) (any, error) {
			ts, inf, err := parse(b)
			switch {
			case err != nil:
				return nil, err
			case inf > 0:
				ts = instantOf(timestampPosInfinityMicros)
			case inf < 0:
				ts = instantOf(timestampNegInfinityMicros)
			}
			return formatISODate(ts.days) + "T" + formatClock(ts.us, 0, true) + "Z", nil
		}}
	case mode == TimeNanoseconds:
		// Infinity is Long.MAX_VALUE / MIN_VALUE.
		return columnType{schema: named(Int64, NameNanoTS, 1), conv: func(b []byte) (any, error) {
			ts, inf, err := parse(b)
			switch {
			case err != nil:
				return nil, err
			case inf > 0:
				return int64(math.MaxInt64), nil
			case inf < 0:
				return int64(math.MinInt64), nil
			}
			us, ok := ts.micros()
			if !ok || us > math.MaxInt64/1000 || us < math.MinInt64/1000 {
				return nil, nil
			}
			return us * 1000, nil
		}}
	case (mode == TimeAdaptive || mode == TimeAdaptiveTimeMicroseconds) && p <= 3:
		return columnType{schema: named(Int64, NameTimestamp, 1), conv: millis}
	}
	return columnType{schema: named(Int64, NameMicroTS, 1), conv: micros}
}

// splitTimetz splits a timetz's text into its clock in microseconds and its UTC offset, in
// seconds and as written ("+02").
func splitTimetz(b []byte) (us, offset int64, zone []byte, err error) {
	us, n, ok := scanClock(b)
	if ok {
		var on int
		offset, on, ok = scanOffset(b[n:])
		ok = ok && n+on == len(b)
	}
	if !ok {
		return 0, 0, nil, fmt.Errorf("invalid timetz %s", quoteText(b))
	}
	return us, offset, b[n:], nil
}

// convZonedTime normalizes a timetz to UTC and writes it as ISO_OFFSET_TIME: HH:mm:ss with the
// fewest fraction digits needed, then Z.
func convZonedTime(b []byte) (any, error) {
	us, off, _, err := splitTimetz(b)
	if err != nil {
		return nil, err
	}
	us = ((us-off*1_000_000)%microsPerDay + microsPerDay) % microsPerDay
	return formatClock(us, 0, true) + "Z", nil
}

// interval holds an interval as pgjdbc's PGInterval parses PostgreSQL's text (IntervalStyle
// postgres): int fields, seconds as whole seconds and microseconds rounded from a double.
// Debezium computes both of its renderings from these. Hours are an int64: PostgreSQL keeps
// an interval's time as int64 microseconds, so its text can have up to 2562047788 hours,
// which PGInterval cannot parse (Debezium then fails) and which we render exactly.
type interval struct {
	years, months, days, minutes int32
	hours                        int64
	wholeSeconds, microSeconds   int32
}

// parseInterval follows PGInterval.setValue: tokens alternate value and unit, except an
// HH:MM:SS token (with an optional sign that applies to all three).
func parseInterval(s string) (interval, error) {
	var iv interval
	var seconds float64
	bad := func() (interval, error) { return iv, fmt.Errorf("invalid interval %s", quoteText([]byte(s))) }
	atoi := func(t string) (int32, bool) {
		n, err := strconv.ParseInt(t, 10, 32)
		return int32(n), err == nil
	}
	tokens := strings.Fields(strings.ToLower(strings.ReplaceAll(s, "+", " ")))
	var value string
	for i, tok := range tokens {
		if i%2 == 0 {
			colon := strings.IndexByte(tok, ':')
			if colon < 0 {
				value = tok
				continue
			}
			neg := tok[0] == '-'
			t := strings.TrimPrefix(tok, "-")
			colon = strings.IndexByte(t, ':')
			if len(t) < colon+3 {
				return bad()
			}
			h, err := strconv.ParseInt(t[:colon], 10, 64)
			m, ok := atoi(t[colon+1 : colon+3])
			if err != nil || !ok {
				return bad()
			}
			sec := 0.0
			if c2 := strings.IndexByte(t[colon+1:], ':'); c2 >= 0 {
				// Seconds below 60, as PostgreSQL writes them; ParseFloat alone would
				// also take 1e300, Inf and NaN.
				f, err := strconv.ParseFloat(t[colon+1+c2+1:], 64)
				if err != nil || !(f >= 0 && f < 60) {
					return bad()
				}
				sec = f
			}
			if neg {
				h, m, sec = -h, -m, -sec
			}
			iv.hours, iv.minutes, seconds = h, m, sec
			value = ""
			continue
		}
		var ok bool
		switch {
		case strings.HasPrefix(tok, "year"):
			iv.years, ok = atoi(value)
		case strings.HasPrefix(tok, "mon"):
			iv.months, ok = atoi(value)
		case strings.HasPrefix(tok, "day"):
			iv.days, ok = atoi(value)
		case strings.HasPrefix(tok, "hour"):
			h, err := strconv.ParseInt(value, 10, 64)
			iv.hours, ok = h, err == nil
		case strings.HasPrefix(tok, "min"):
			iv.minutes, ok = atoi(value)
		case strings.HasPrefix(tok, "sec"):
			f, err := strconv.ParseFloat(value, 64)
			seconds, ok = f, err == nil && math.Abs(f) < 1<<31 // PGInterval's int seconds
		default:
			ok = true
		}
		if !ok {
			return bad()
		}
	}
	// PGInterval.setSeconds: micros rounded as Math.round does.
	total := javaLong(math.Floor(seconds*1e6 + 0.5))
	iv.wholeSeconds = int32(total / 1_000_000)
	iv.microSeconds = int32(total % 1_000_000)
	return iv, nil
}

// seconds is PGInterval.getSeconds.
func (iv interval) seconds() float64 {
	return float64(iv.wholeSeconds) + float64(iv.microSeconds)/1e6
}

// daysPerMonthAvg is Debezium's MicroDuration.DAYS_PER_MONTH_AVG.
const daysPerMonthAvg = 365.25 / 12.0

// microDuration follows Debezium's MicroDuration.durationMicros, int and floating point
// arithmetic included, so that month-bearing intervals give the same (approximate) number.
func (iv interval) microDuration() int64 {
	numberOfDays := float64(iv.years*12+iv.months)*daysPerMonthAvg + float64(iv.days)
	numberOfSeconds := ((numberOfDays*24+float64(iv.hours))*60+float64(iv.minutes))*60 + iv.seconds()
	return javaLong(numberOfSeconds*1e6 + 0)
}

// javaLong converts as Java's (long) cast: NaN is 0, out-of-range values saturate.
func javaLong(f float64) int64 {
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}

// isoString follows Debezium's Interval.toIsoString with BigDecimal.valueOf(getSeconds()):
// P<y>Y<m>M<d>DT<h>H<m>M<s>S, the seconds as the double's shortest decimal form, at most nine
// fraction digits, trailing zeros stripped.
func (iv interval) isoString() string {
	sec := javaDecimalOf(iv.seconds())
	if sec.Scale > 9 {
		sec = sec.truncate(9)
	}
	return fmt.Sprintf("P%dY%dM%dDT%dH%dM%sS", iv.years, iv.months, iv.days, iv.hours, iv.minutes, sec.stripTrailingZeros().String())
}

func (o *Options) intervalType() columnType {
	if o.IntervalMode == IntervalString {
		return columnType{schema: named(String, NameInterval, 1), conv: func(b []byte) (any, error) {
			iv, err := parseInterval(string(b))
			return iv.isoString(), err
		}}
	}
	return columnType{schema: named(Int64, NameMicroDuration, 1), conv: func(b []byte) (any, error) {
		iv, err := parseInterval(string(b))
		return iv.microDuration(), err
	}}
}
