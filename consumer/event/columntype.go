package event

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/procon-cdc/procon/envelope"
)

// ColumnType returns the PostgreSQL type to create a column of for a field of schema s (when
// the target table is created from an event), as format_type prints it, so that Text of the
// field's values reads into it. The choices, where the schema does not say everything:
//
//   - Decimal → numeric(p,s) with connect.decimal.precision, numeric when it is absent;
//     VariableScaleDecimal → numeric.
//   - Date, IsoDate → date; Time and Connect's Time → time(3); MicroTime, NanoTime, IsoTime
//     → time (PostgreSQL keeps microseconds); Timestamp and Connect's Timestamp →
//     timestamp(3); MicroTimestamp, NanoTimestamp, IsoTimestamp → timestamp; ZonedTimestamp
//     → timestamptz; ZonedTime → timetz; MicroDuration, Interval → interval.
//   - Json → jsonb; Xml → xml; Uuid → uuid; Enum, Ltree → text (the enum type is not
//     created); Tsvector → tsvector; Bits → bit varying(n) (bit varying when unbounded).
//   - Point → point; other geometries are refused (PostGIS may be absent).
//   - Plain types: boolean, smallint (int8, int16), integer, bigint, real, double precision,
//     text, bytea; arrays → the element's type with []; maps and other structs → jsonb.
func ColumnType(s *envelope.Schema) (string, error) {
	return columnType(s, 0)
}

func columnType(s *envelope.Schema, depth int) (string, error) {
	if s == nil {
		return "", errors.New("event: no schema to derive a column type from")
	}
	if depth > maxArrayDims {
		return "", errors.New("event: arrays nested too deep for a column")
	}
	switch s.Name {
	case envelope.LogicalDecimal:
		scale, err := schemaScale(s)
		if err != nil {
			return "", fmt.Errorf("event: %w", err)
		}
		if p, ok := s.Param("connect.decimal.precision"); ok {
			if n, err := strconv.Atoi(p); err == nil && n >= 1 && n <= 1000 && scale >= 0 && int(scale) <= n {
				return fmt.Sprintf("numeric(%d,%d)", n, scale), nil
			}
		}
		return "numeric", nil
	case envelope.NameVarDecimal:
		return "numeric", nil
	case envelope.LogicalDate, envelope.NameDate, envelope.NameIsoDate:
		return "date", nil
	case envelope.LogicalTime, envelope.NameTime:
		return "time(3) without time zone", nil
	case envelope.NameMicroTime, envelope.NameNanoTime, envelope.NameIsoTime:
		return "time without time zone", nil
	case envelope.LogicalTimestamp, envelope.NameTimestamp:
		return "timestamp(3) without time zone", nil
	case envelope.NameMicroTS, envelope.NameNanoTS, envelope.NameIsoTimestamp:
		return "timestamp without time zone", nil
	case envelope.NameZonedTS:
		return "timestamp with time zone", nil
	case envelope.NameZonedTime:
		return "time with time zone", nil
	case envelope.NameMicroDuration, envelope.NameInterval:
		return "interval", nil
	case envelope.NameJSON:
		return "jsonb", nil
	case envelope.NameXML:
		return "xml", nil
	case envelope.NameUUID:
		return "uuid", nil
	case envelope.NameEnum, envelope.NameLtree:
		return "text", nil
	case envelope.NameTsvector:
		return "tsvector", nil
	case envelope.NameBits:
		if p, ok := s.Param("length"); ok {
			if n, err := strconv.Atoi(p); err == nil && n > 0 && n <= 83886080 {
				return fmt.Sprintf("bit varying(%d)", n), nil
			}
		}
		return "bit varying", nil
	case namePoint:
		return "point", nil
	case nameGeometry, nameGeography:
		return "", fmt.Errorf("event: %s fields need PostGIS; create the column yourself", s.Name)
	}
	switch s.Type {
	case envelope.Boolean:
		return "boolean", nil
	case envelope.Int8, envelope.Int16:
		return "smallint", nil
	case envelope.Int32:
		return "integer", nil
	case envelope.Int64:
		return "bigint", nil
	case envelope.Float32:
		return "real", nil
	case envelope.Float64:
		return "double precision", nil
	case envelope.String:
		return "text", nil
	case envelope.Bytes:
		return "bytea", nil
	case envelope.Array:
		elem, err := columnType(s.Items, depth+1)
		if err != nil {
			return "", err
		}
		if s.Items != nil && s.Items.Type == envelope.Array {
			return elem, nil // PostgreSQL's array types do not count dimensions
		}
		return elem + "[]", nil
	case envelope.Map, envelope.Struct:
		return "jsonb", nil
	}
	return "", fmt.Errorf("event: no column type for a %s", s.Type)
}
