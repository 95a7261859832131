package envelope

import "github.com/procon-cdc/procon/config"

// Options are the value-mapping choices users make under Debezium's names.
type Options struct {
	DecimalMode       string // precise | double | string
	TimePrecisionMode string // adaptive | adaptive_time_microseconds | connect | isostring | microseconds | nanoseconds
	BinaryMode        string // bytes | base64 | base64-url-safe | hex
	HstoreMode        string // json | map
	IntervalMode      string // numeric | string
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
	// SchemaNameAdjust is none or avro (names made Avro-safe).
	SchemaNameAdjust string
	FieldNameAdjust  string
}

// OptionsFrom maps the configuration's Debezium section.
func OptionsFrom(d *config.Debezium) Options {
	return Options{
		DecimalMode:       d.DecimalHandlingMode,
		TimePrecisionMode: d.TimePrecisionMode,
		BinaryMode:        d.BinaryHandlingMode,
		HstoreMode:        d.HstoreHandlingMode,
		IntervalMode:      d.IntervalHandlingMode,
		MoneyFraction:     *d.MoneyFractionDigits,
		Placeholder:       *d.UnavailableValuePlaceholder,
		// Debezium's behaviour; the engine applies fill_unchanged_toast.
		FillUnchangedToast: true,
		IncludeUnknown:     d.IncludeUnknownDatatypes,
		SchemaNameAdjust:   d.SchemaNameAdjustmentMode,
		FieldNameAdjust:    d.FieldNameAdjustmentMode,
	}
}

// DefaultOptions are Debezium's defaults.
func DefaultOptions() Options {
	return Options{
		DecimalMode:        "precise",
		TimePrecisionMode:  "adaptive",
		BinaryMode:         "bytes",
		HstoreMode:         "json",
		IntervalMode:       "numeric",
		MoneyFraction:      2,
		Placeholder:        "__debezium_unavailable_value",
		FillUnchangedToast: true,
		SchemaNameAdjust:   "none",
		FieldNameAdjust:    "none",
	}
}
