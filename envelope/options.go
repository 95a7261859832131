package envelope

import (
	"errors"
	"fmt"
	"strings"

	"github.com/procon-cdc/procon/config"
)

// Options are the value-mapping choices users make under Debezium's names. The zero value of
// each mode is Debezium's default.
type Options struct {
	DecimalMode       DecimalMode
	TimePrecisionMode TimePrecisionMode
	BinaryMode        BinaryMode
	HstoreMode        HstoreMode
	IntervalMode      IntervalMode
	MoneyFraction     int
	// Placeholder replaces unchanged TOASTed values that the server did not send.
	Placeholder string
	// FillUnchangedToast takes an unchanged TOASTed value from the old row image when the
	// server sent one (REPLICA IDENTITY FULL) instead of writing the placeholder.
	FillUnchangedToast bool
	// IncludeUnknown (include.unknown.datatypes) renders columns of types Debezium cannot map
	// as Debezium does then: the bytes of their text, per BinaryMode. Without it, Procon
	// sends their text as a string (Debezium leaves them out).
	IncludeUnknown bool
	// SchemaNameAdjust and FieldNameAdjust (schema.name.adjustment.mode,
	// field.name.adjustment.mode) make schema and field names Avro-safe.
	SchemaNameAdjust NameAdjustment
	FieldNameAdjust  NameAdjustment
}

// DecimalMode is decimal.handling.mode: how numeric and money values are written.
type DecimalMode uint8

// Decimal handling modes.
const (
	DecimalPrecise DecimalMode = iota // Connect's Decimal (VariableScaleDecimal without a scale)
	DecimalDouble                     // a float64
	DecimalString                     // the plain decimal text
)

// TimePrecisionMode is time.precision.mode: how date, time and timestamp values are written.
type TimePrecisionMode uint8

// Time precision modes.
const (
	TimeAdaptive                 TimePrecisionMode = iota // milli-, micro- or nanoseconds per column precision
	TimeAdaptiveTimeMicroseconds                          // adaptive, but time always in microseconds
	TimeConnect                                           // Connect's Date, Time and Timestamp (milliseconds)
	TimeISOString                                         // ISO-8601 text
	TimeMicroseconds                                      // microseconds
	TimeNanoseconds                                       // nanoseconds
)

// BinaryMode is binary.handling.mode: how bytea values are written.
type BinaryMode uint8

// Binary handling modes.
const (
	BinaryBytes         BinaryMode = iota // bytes
	BinaryBase64                          // a base64 string
	BinaryBase64URLSafe                   // a URL-safe base64 string
	BinaryHex                             // a hex string
)

// HstoreMode is hstore.handling.mode: how hstore values are written.
type HstoreMode uint8

// Hstore handling modes.
const (
	HstoreJSON HstoreMode = iota // the JSON text of an object
	HstoreMap                    // a Connect map
)

// IntervalMode is interval.handling.mode: how interval values are written.
type IntervalMode uint8

// Interval handling modes.
const (
	IntervalNumeric IntervalMode = iota // approximate microseconds
	IntervalString                      // ISO-8601 duration text
)

// NameAdjustment is schema.name.adjustment.mode or field.name.adjustment.mode.
type NameAdjustment uint8

// Name adjustment modes.
const (
	AdjustNone NameAdjustment = iota // names as they are
	AdjustAvro                       // characters Avro does not accept replaced by '_'
)

// Debezium's names of the modes, indexed by mode.
var (
	decimalModes   = []string{DecimalPrecise: "precise", DecimalDouble: "double", DecimalString: "string"}
	timePrecisions = []string{TimeAdaptive: "adaptive", TimeAdaptiveTimeMicroseconds: "adaptive_time_microseconds",
		TimeConnect: "connect", TimeISOString: "isostring", TimeMicroseconds: "microseconds", TimeNanoseconds: "nanoseconds"}
	binaryModes     = []string{BinaryBytes: "bytes", BinaryBase64: "base64", BinaryBase64URLSafe: "base64-url-safe", BinaryHex: "hex"}
	hstoreModes     = []string{HstoreJSON: "json", HstoreMap: "map"}
	intervalModes   = []string{IntervalNumeric: "numeric", IntervalString: "string"}
	nameAdjustments = []string{AdjustNone: "none", AdjustAvro: "avro"}
)

// String returns Debezium's name of the mode.
func (m DecimalMode) String() string { return modeName(decimalModes, m) }

// String returns Debezium's name of the mode.
func (m TimePrecisionMode) String() string { return modeName(timePrecisions, m) }

// String returns Debezium's name of the mode.
func (m BinaryMode) String() string { return modeName(binaryModes, m) }

// String returns Debezium's name of the mode.
func (m HstoreMode) String() string { return modeName(hstoreModes, m) }

// String returns Debezium's name of the mode.
func (m IntervalMode) String() string { return modeName(intervalModes, m) }

// String returns Debezium's name of the mode.
func (m NameAdjustment) String() string { return modeName(nameAdjustments, m) }

func modeName[M ~uint8](names []string, m M) string {
	if int(m) < len(names) {
		return names[m]
	}
	return fmt.Sprintf("mode(%d)", m)
}

// parseMode sets *m to the mode Debezium calls name; the error names the configuration key.
func parseMode[M ~uint8](m *M, key string, names []string, name string) error {
	for i, n := range names {
		if n == name {
			*m = M(i)
			return nil
		}
	}
	return &config.FieldError{Key: key, Problem: fmt.Sprintf("%q is not one of %s", name, strings.Join(names, ", "))}
}

// OptionsFrom maps the configuration's Debezium section. Config validation already rejects
// unknown mode names; OptionsFrom reports one too, naming its key, rather than guess.
func OptionsFrom(d *config.Debezium) (Options, error) {
	o := Options{
		MoneyFraction: *d.MoneyFractionDigits,
		Placeholder:   *d.UnavailableValuePlaceholder,
		// Debezium's behaviour; the engine applies fill_unchanged_toast.
		FillUnchangedToast: true,
		IncludeUnknown:     d.IncludeUnknownDatatypes,
	}
	err := errors.Join(
		parseMode(&o.DecimalMode, "debezium.decimal.handling.mode", decimalModes, d.DecimalHandlingMode),
		parseMode(&o.TimePrecisionMode, "debezium.time.precision.mode", timePrecisions, d.TimePrecisionMode),
		parseMode(&o.BinaryMode, "debezium.binary.handling.mode", binaryModes, d.BinaryHandlingMode),
		parseMode(&o.HstoreMode, "debezium.hstore.handling.mode", hstoreModes, d.HstoreHandlingMode),
		parseMode(&o.IntervalMode, "debezium.interval.handling.mode", intervalModes, d.IntervalHandlingMode),
		parseMode(&o.SchemaNameAdjust, "debezium.schema.name.adjustment.mode", nameAdjustments, d.SchemaNameAdjustmentMode),
		parseMode(&o.FieldNameAdjust, "debezium.field.name.adjustment.mode", nameAdjustments, d.FieldNameAdjustmentMode),
	)
	if err != nil {
		return Options{}, err
	}
	return o, nil
}

// DefaultOptions are Debezium's defaults.
func DefaultOptions() Options {
	return Options{
		MoneyFraction:      2,
		Placeholder:        "__debezium_unavailable_value",
		FillUnchangedToast: true,
	}
}
