package envelope

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Decimal is the value of Connect's Decimal logical type: Unscaled × 10^-Scale. Its wire form
// (JSON base64, Avro bytes) is the unscaled integer in big-endian two's complement, as Java's
// BigInteger.toByteArray writes it.
type Decimal struct {
	Unscaled *big.Int
	Scale    int32
}

// Bytes returns the minimal big-endian two's-complement form of the unscaled value.
func (d Decimal) Bytes() []byte { return d.appendBytes(nil) }

// appendBytes appends Bytes to dst; values that fit an int64 (nearly all) take no detour
// through big.Int.
func (d Decimal) appendBytes(dst []byte) []byte {
	if !d.Unscaled.IsInt64() {
		return append(dst, twosComplement(d.Unscaled)...)
	}
	v := d.Unscaled.Int64()
	size := 1
	for size < 8 && (v < -(1<<(8*size-1)) || v >= 1<<(8*size-1)) {
		size++
	}
	for i := size - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

func twosComplement(n *big.Int) []byte {
	if n.Sign() >= 0 {
		b := n.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	// -n = ~(n-1): take |n|-1, invert its bytes, and keep a leading 1 bit.
	m := new(big.Int).Neg(n)
	m.Sub(m, big.NewInt(1))
	b := m.Bytes()
	for i := range b {
		b[i] = ^b[i]
	}
	if len(b) == 0 || b[0]&0x80 == 0 {
		b = append([]byte{0xff}, b...)
	}
	return b
}

// String renders the decimal as Java's BigDecimal.toPlainString does.
func (d Decimal) String() string {
	s := d.Unscaled.String()
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	switch {
	case d.Scale > 0:
		if len(s) <= int(d.Scale) {
			s = strings.Repeat("0", int(d.Scale)-len(s)+1) + s
		}
		s = s[:len(s)-int(d.Scale)] + "." + s[len(s)-int(d.Scale):]
	case d.Scale < 0:
		s += strings.Repeat("0", int(-d.Scale))
	}
	if neg {
		s = "-" + s
	}
	return s
}

// parseDecimal parses PostgreSQL's numeric text (digits, optional sign and point, no exponent).
// Special values (NaN, Infinity, -Infinity) are returned as special.
func parseDecimal(b []byte) (d Decimal, special string, err error) {
	switch string(b) {
	case "NaN", "Infinity", "-Infinity":
		return Decimal{}, string(b), nil
	}
	if n, scale, ok := parseSmallDecimal(b); ok {
		return Decimal{Unscaled: big.NewInt(n), Scale: scale}, "", nil
	}
	s := string(b)
	intPart, frac, _ := strings.Cut(s, ".")
	// SetString alone would take a sign after the point (".-5" as -0.05) and a plus.
	digitsOnly := func(s string) bool { return strings.Trim(s, "0123456789") == "" }
	if !digitsOnly(strings.TrimPrefix(intPart, "-")) || !digitsOnly(frac) {
		return Decimal{}, "", fmt.Errorf("invalid numeric %s", quoteText(b))
	}
	n, ok := new(big.Int).SetString(intPart+frac, 10)
	if !ok {
		return Decimal{}, "", fmt.Errorf("invalid numeric %s", quoteText(b))
	}
	return Decimal{Unscaled: n, Scale: int32(len(frac))}, "", nil
}

// parseSmallDecimal parses numeric text of at most 18 digits without big.Int arithmetic.
func parseSmallDecimal(b []byte) (n int64, scale int32, ok bool) {
	i, neg := 0, false
	if len(b) > 0 && b[0] == '-' {
		i, neg = 1, true
	}
	digits, point := 0, -1
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			if digits++; digits > 18 {
				return 0, 0, false
			}
			n = n*10 + int64(c-'0')
		case c == '.' && point < 0:
			point = i
		default:
			return 0, 0, false
		}
	}
	if digits == 0 {
		return 0, 0, false
	}
	if point >= 0 {
		scale = int32(len(b) - point - 1)
	}
	if neg {
		n = -n
	}
	return n, scale, true
}

// rescale changes the scale, padding with zeros or rounding half up as BigDecimal.setScale.
func (d Decimal) rescale(scale int32) Decimal {
	if k := scale - d.Scale; k > 0 && k <= 18 && d.Unscaled.IsInt64() {
		// Padding with zeros, in int64 when it cannot overflow.
		if v, m := d.Unscaled.Int64(), pow10i64[k]; v > -(1<<62)/m && v < (1<<62)/m {
			return Decimal{Unscaled: big.NewInt(v * m), Scale: scale}
		}
	}
	switch {
	case scale == d.Scale:
		return d
	case scale > d.Scale:
		m := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale-d.Scale)), nil)
		return Decimal{Unscaled: m.Mul(m, d.Unscaled), Scale: scale}
	}
	div := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(d.Scale-scale)), nil)
	q, r := new(big.Int).QuoRem(d.Unscaled, div, new(big.Int))
	if r.Abs(r).Mul(r, big.NewInt(2)).Cmp(div) >= 0 {
		if d.Unscaled.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return Decimal{Unscaled: q, Scale: scale}
}

var pow10i64 = func() (p [19]int64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// numericTypmod splits numeric's typmod into precision and scale (-1, -1 when unconstrained).
func numericTypmod(typmod int32) (precision, scale int32) {
	if typmod < 4 {
		return -1, -1
	}
	t := typmod - 4
	return (t >> 16) & 0xffff, int32(int16(t & 0xffff))
}

var specialStrings = map[string]string{"NaN": "NAN", "Infinity": "POSITIVE_INFINITY", "-Infinity": "NEGATIVE_INFINITY"}

// Limits of the numeric typmods PostgreSQL makes: precision up to NUMERIC_MAX_PRECISION, and
// a scale field of 11 bits (PostgreSQL 15's negative scales are its two's complement, which
// pgjdbc's getScale, and so Debezium, and numericTypmod read as 1024 to 2047).
const (
	maxNumericPrecision = 1000
	maxNumericScale     = 0x7ff
)

func (o *Options) numericType(typmod int32) (columnType, error) {
	precision, scale := numericTypmod(typmod)
	if typmod >= 4 && (precision > maxNumericPrecision || scale < 0 || scale > maxNumericScale) {
		// Not a typmod PostgreSQL makes; rescaling every value to such a scale would cost
		// far more than its text.
		return columnType{}, fmt.Errorf("numeric typmod %d (precision %d, scale %d) is outside PostgreSQL's limits", typmod, precision, scale)
	}
	switch o.DecimalMode {
	case DecimalDouble:
		return columnType{schema: prim(Float64, false), conv: convNumericDouble}, nil
	case DecimalString:
		return columnType{schema: prim(String, false), conv: func(b []byte) (any, error) {
			d, special, err := parseDecimal(b)
			if special != "" {
				return specialStrings[special], nil
			}
			if err != nil {
				return nil, err
			}
			if scale >= 0 {
				d = d.rescale(scale)
			}
			return d.String(), nil
		}}, nil
	}
	if scale < 0 {
		return columnType{schema: variableScaleSchema, conv: convVariableScale}, nil
	}
	s := named(Bytes, LogicalDecimal, 1, Param{"scale", strconv.Itoa(int(scale))}, Param{"connect.decimal.precision", strconv.Itoa(int(precision))})
	return columnType{schema: s, conv: func(b []byte) (any, error) {
		d, special, err := parseDecimal(b)
		if special != "" {
			return nil, fmt.Errorf("numeric %s cannot be represented in decimal.handling.mode=precise: use double or string", special)
		}
		if err != nil {
			return nil, err
		}
		return d.rescale(scale), nil
	}}, nil
}

// convNumericDouble converts numeric text to the nearest double, as BigDecimal.doubleValue
// does: values beyond the double range become ±Infinity, NaN and the infinities stay.
func convNumericDouble(b []byte) (any, error) {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return nil, numberError("numeric", b, err)
	}
	return f, nil
}

// variableScaleSchema is io.debezium.data.VariableScaleDecimal, shared by every value (one
// schema per value would make a numeric[] cost hundreds of bytes per element).
var variableScaleSchema = func() *Schema {
	s := structSchema(NameVarDecimal, 1, false,
		field("scale", prim(Int32, false)),
		field("value", prim(Bytes, false)))
	s.Doc = "Variable scaled decimal"
	return s
}()

func convVariableScale(b []byte) (any, error) {
	d, special, err := parseDecimal(b)
	if special != "" {
		return nil, fmt.Errorf("numeric %s cannot be represented in decimal.handling.mode=precise: use double or string", special)
	}
	if err != nil {
		return nil, err
	}
	v := NewValue(variableScaleSchema)
	v.Fields[0] = d.Scale
	v.Fields[1] = d.Bytes()
	return v, nil
}

// moneyType parses money's text output, which depends on lc_monetary; the replication
// connection sets lc_monetary=C, giving -$1,234.56.
func (o *Options) moneyType() columnType {
	parse := func(b []byte) (Decimal, error) {
		s := strings.NewReplacer("$", "", ",", "").Replace(string(b))
		if strings.HasPrefix(s, "(") { // accounting style negative
			s = "-" + strings.Trim(s, "()")
		}
		d, special, err := parseDecimal([]byte(s))
		if special != "" {
			// money has no NaN or infinities; a Decimal without its number would
			// crash the encoder.
			return Decimal{}, fmt.Errorf("invalid money %s", quoteText(b))
		}
		return d, err
	}
	switch o.DecimalMode {
	case DecimalDouble:
		return columnType{schema: prim(Float64, false), conv: func(b []byte) (any, error) {
			d, err := parse(b)
			if err != nil {
				return nil, err
			}
			f, _ := new(big.Float).SetString(d.String())
			v, _ := f.Float64()
			return v, nil
		}}
	case DecimalString:
		return columnType{schema: prim(String, false), conv: func(b []byte) (any, error) {
			d, err := parse(b)
			if err != nil {
				return nil, err
			}
			return d.String(), nil
		}}
	}
	s := named(Bytes, LogicalDecimal, 1, Param{"scale", strconv.Itoa(o.MoneyFraction)})
	return columnType{schema: s, conv: func(b []byte) (any, error) {
		d, err := parse(b)
		if err != nil {
			return nil, err
		}
		return d.rescale(int32(o.MoneyFraction)), nil
	}}
}

// javaDecimalOf is BigDecimal.valueOf(double): the decimal of Double.toString(f).
func javaDecimalOf(f float64) Decimal {
	s := javaDouble(f)
	mant, exp, _ := strings.Cut(s, "E")
	d, _, _ := parseDecimal([]byte(mant))
	if exp != "" {
		e, _ := strconv.Atoi(exp)
		d.Scale -= int32(e)
	}
	return d
}

// stripTrailingZeros is BigDecimal.stripTrailingZeros (zero becomes 0 with scale 0).
func (d Decimal) stripTrailingZeros() Decimal {
	if d.Unscaled.Sign() == 0 {
		return Decimal{Unscaled: new(big.Int), Scale: 0}
	}
	u := new(big.Int).Set(d.Unscaled)
	scale := d.Scale
	ten := big.NewInt(10)
	q, r := new(big.Int), new(big.Int)
	for {
		q.QuoRem(u, ten, r)
		if r.Sign() != 0 {
			break
		}
		u.Set(q)
		scale--
	}
	return Decimal{Unscaled: u, Scale: scale}
}

// truncate lowers the scale rounding toward zero (RoundingMode.DOWN).
func (d Decimal) truncate(scale int32) Decimal {
	if scale >= d.Scale {
		return d.rescale(scale)
	}
	div := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(d.Scale-scale)), nil)
	return Decimal{Unscaled: new(big.Int).Quo(d.Unscaled, div), Scale: scale}
}
