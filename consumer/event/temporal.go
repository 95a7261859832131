package event

import (
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/procon-cdc/procon/envelope"
)

// The inverse of package envelope's temporal encodings: Debezium's numbers and ISO strings back
// into PostgreSQL's text input (DateStyle ISO), written by hand because time.Time cannot hold
// every date PostgreSQL can (BC years, years past 9999).

const (
	microsPerDay = 86_400_000_000
	nanosPerDay  = microsPerDay * 1000
	// Debezium's encodings of timestamp 'infinity' and '-infinity' in microseconds.
	timestampPosInfinityMicros = 9223372036825200000
	timestampNegInfinityMicros = -9223372036832400000
)

// Debezium's POSITIVE_INFINITY_LOCAL_DATE and NEGATIVE_INFINITY_LOCAL_DATE as days since the
// epoch (the earlier one is infinity, as in Debezium).
var (
	dateInfinityDays    = daysFromCivil(-5877611, 6, 21)
	dateNegInfinityDays = daysFromCivil(-5877611, 6, 22)
)

// daysFromCivil returns days since 1970-01-01 of a proleptic Gregorian date (astronomical
// year: 1 BC is year 0).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// maxDays bounds the dates written: PostgreSQL's own range is far inside it, and the
// arithmetic above stays clear of overflow.
const maxDays = 1 << 40

// dateText writes days since the epoch as PostgreSQL's date input: YYYY-MM-DD, BC years as
// such, Debezium's infinity dates as infinity.
func dateText(days int64) (string, error) {
	switch days {
	case dateInfinityDays:
		return "infinity", nil
	case dateNegInfinityDays:
		return "-infinity", nil
	}
	if days > maxDays || days < -maxDays {
		return "", errors.New("date out of range")
	}
	y, m, d := envelope.CivilFromDays(days)
	return string(appendDate(nil, y, m, d)), nil
}

func appendDate(b []byte, y, m, d int64) []byte {
	bc := y <= 0
	if bc {
		y = 1 - y
	}
	b = appendPadded(b, y, 4)
	b = append(b, '-')
	b = appendPadded(b, m, 2)
	b = append(b, '-')
	b = appendPadded(b, d, 2)
	if bc {
		b = append(b, " BC"...)
	}
	return b
}

func appendPadded(b []byte, v int64, width int) []byte {
	s := strconv.FormatInt(v, 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// appendClock writes nanoseconds of the day as HH:MM:SS with the fraction it needs (nanosecond
// digits are rounded by PostgreSQL's input to its microseconds). 24:00:00 stays as it is.
func appendClock(b []byte, ns int64) []byte {
	sec := ns / 1e9
	frac := ns % 1e9
	b = appendPadded(b, sec/3600, 2)
	b = append(b, ':')
	b = appendPadded(b, sec/60%60, 2)
	b = append(b, ':')
	b = appendPadded(b, sec%60, 2)
	if frac != 0 {
		f := strings.TrimRight(strconv.FormatInt(frac+1e9, 10)[1:], "0")
		b = append(b, '.')
		b = append(b, f...)
	}
	return b
}

// clockText writes a time of day given in units of unit nanoseconds.
func clockText(v, unit int64, t *pgType) (string, error) {
	if v < 0 || v > nanosPerDay/unit {
		return "", errors.New("time of day out of range")
	}
	b := appendClock(nil, v*unit)
	if t.cat == catTimeTZ {
		b = append(b, "+00"...) // Debezium's times are UTC
	}
	return string(b), nil
}

// instant is a point in time as days since the epoch and nanoseconds of the day.
type instant struct{ days, ns int64 }

// instantOf splits v, in units of unit nanoseconds since the epoch.
func instantOf(v, unit int64) instant {
	perDay := nanosPerDay / unit
	days := floorDiv(v, perDay)
	return instant{days: days, ns: (v - days*perDay) * unit}
}

// timestampText writes an instant as PostgreSQL's timestamp input: UTC wall time, with the
// zone for a timestamptz column.
func timestampText(in instant, t *pgType) (string, error) {
	if in.days > maxDays || in.days < -maxDays {
		return "", errors.New("timestamp out of range")
	}
	y, m, d := envelope.CivilFromDays(in.days)
	bc := y <= 0
	b := appendDate(nil, y, m, d)
	if bc {
		b = b[:len(b)-3]
	}
	b = append(b, ' ')
	b = appendClock(b, in.ns)
	if t.cat == catTimestampTZ || t.cat == catTimeTZ {
		b = append(b, "+00"...)
	}
	if bc {
		b = append(b, " BC"...)
	}
	return string(b), nil
}

// epochTimestampText writes a timestamp given in units of unit nanoseconds since the epoch,
// recognizing Debezium's infinity encodings for that unit.
func epochTimestampText(v, unit int64, t *pgType) (string, error) {
	switch unit {
	case 1: // NanoTimestamp: Long.MAX_VALUE / MIN_VALUE
		switch v {
		case math.MaxInt64:
			return "infinity", nil
		case math.MinInt64:
			return "-infinity", nil
		}
	case 1000:
		switch v {
		case timestampPosInfinityMicros:
			return "infinity", nil
		case timestampNegInfinityMicros:
			return "-infinity", nil
		}
	case 1e6:
		switch v {
		case floorDiv(timestampPosInfinityMicros, 1000):
			return "infinity", nil
		case floorDiv(timestampNegInfinityMicros, 1000):
			return "-infinity", nil
		}
	}
	return timestampText(instantOf(v, unit), t)
}

// parseISODate reads Debezium's ISO dates: [+-]YYYY-MM-DD (java.time's astronomical years,
// a sign past 9999 or before year 0).
func parseISODate(s string) (int64, string, bool) {
	neg := false
	switch {
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	case strings.HasPrefix(s, "-"):
		s, neg = s[1:], true
	}
	ys, rest, ok := strings.Cut(s, "-")
	if !ok || len(ys) < 4 || len(ys) > 9 || len(rest) < 5 || rest[2] != '-' {
		return 0, "", false
	}
	y, err1 := strconv.ParseInt(ys, 10, 64)
	m, err2 := strconv.ParseInt(rest[:2], 10, 64)
	d, err3 := strconv.ParseInt(rest[3:5], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || m < 1 || m > 12 || d < 1 || d > 31 {
		return 0, "", false
	}
	if neg {
		y = -y
	}
	return daysFromCivil(y, m, d), rest[5:], true
}

// parseISOClock reads HH:MM[:SS[.fffffffff]] into nanoseconds of the day, and what follows.
func parseISOClock(s string) (int64, string, bool) {
	if len(s) < 5 || s[2] != ':' {
		return 0, "", false
	}
	h, err1 := strconv.ParseInt(s[:2], 10, 64)
	m, err2 := strconv.ParseInt(s[3:5], 10, 64)
	if err1 != nil || err2 != nil || h > 24 || m > 59 || h < 0 || m < 0 {
		return 0, "", false
	}
	ns := (h*3600 + m*60) * 1e9
	s = s[5:]
	if len(s) >= 3 && s[0] == ':' {
		sec, err := strconv.ParseInt(s[1:3], 10, 64)
		if err != nil || sec < 0 || sec > 60 {
			return 0, "", false
		}
		ns += sec * 1e9
		s = s[3:]
		if len(s) > 0 && s[0] == '.' {
			i := 1
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				i++
			}
			f := s[1:i]
			if f == "" || len(f) > 9 {
				return 0, "", false
			}
			n, _ := strconv.ParseInt(f+strings.Repeat("0", 9-len(f)), 10, 64)
			ns += n
			s = s[i:]
		}
	}
	return ns, s, true
}

// isoDateText turns an IsoDate (2020-02-29Z) into date input.
func isoDateText(s string) (string, error) {
	days, rest, ok := parseISODate(s)
	if !ok || (rest != "" && rest != "Z") {
		return "", errors.New("not an ISO date")
	}
	return dateText(days)
}

// isoTimestampText turns an IsoTimestamp or a ZonedTimestamp (2020-04-01T11:51:02.000000Z,
// always UTC) into timestamp input.
func isoTimestampText(s string, t *pgType) (string, error) {
	switch s {
	case "infinity", "-infinity":
		return s, nil
	}
	days, rest, ok := parseISODate(s)
	if !ok || !strings.HasPrefix(rest, "T") {
		return "", errors.New("not an ISO timestamp")
	}
	ns, rest, ok := parseISOClock(rest[1:])
	if !ok || rest != "Z" {
		return "", errors.New("not an ISO timestamp in UTC")
	}
	// Debezium's isostring mode writes the infinity timestamps as the instants of their
	// microsecond encodings.
	for _, inf := range []struct {
		us   int64
		text string
	}{{timestampPosInfinityMicros, "infinity"}, {timestampNegInfinityMicros, "-infinity"}} {
		if (instant{days, ns}) == instantOf(inf.us, 1000) {
			return inf.text, nil
		}
	}
	return timestampText(instant{days, ns}, t)
}

// isoTimeText turns an IsoTime or ZonedTime (11:51:30.123789Z, UTC) into time input.
func isoTimeText(s string, t *pgType) (string, error) {
	ns, rest, ok := parseISOClock(s)
	if !ok || rest != "Z" {
		return "", errors.New("not an ISO time in UTC")
	}
	return clockText(ns, 1, t)
}

// Debezium's MicroDuration counts a month as 365.25/12 days (MicroDuration.DAYS_PER_MONTH_AVG).
const (
	microsPerMonth = 2_629_800_000_000
)

// intervalText writes a MicroDuration as interval input. The encoding is lossy (months are
// average months): it is read as whole average months, then whole days, then the time, so
// that '1 year 2 mons 3 days 04:05:06' comes back as it was; a day count of 31 or more without
// months comes back as months and days of the same total.
func intervalText(us int64) string {
	if us == 0 {
		return "00:00:00"
	}
	neg := us < 0
	u := uint64(us)
	if neg {
		u = uint64(-(us + 1)) + 1 // MinInt64 too
	}
	months := u / microsPerMonth
	u %= microsPerMonth
	days := u / microsPerDay
	u %= microsPerDay
	sign := ""
	if neg {
		sign = "-"
	}
	var b []byte
	if months != 0 {
		b = append(b, sign...)
		b = strconv.AppendUint(b, months, 10)
		b = append(b, " mons "...)
	}
	if days != 0 {
		b = append(b, sign...)
		b = strconv.AppendUint(b, days, 10)
		b = append(b, " days "...)
	}
	b = append(b, sign...)
	b = appendClock(b, int64(u)*1000)
	return string(b)
}
