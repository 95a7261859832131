package config

// Debezium holds the options that keep Debezium's names, so that a team can carry its Debezium
// connector properties over unchanged. Each key is the Debezium property name.
type Debezium struct {
	DecimalHandlingMode  string `yaml:"decimal.handling.mode"`  // precise | double | string
	TimePrecisionMode    string `yaml:"time.precision.mode"`    // adaptive | adaptive_time_microseconds | connect | isostring | microseconds | nanoseconds
	BinaryHandlingMode   string `yaml:"binary.handling.mode"`   // bytes | base64 | base64-url-safe | hex
	HstoreHandlingMode   string `yaml:"hstore.handling.mode"`   // json | map
	IntervalHandlingMode string `yaml:"interval.handling.mode"` // numeric | string
	MoneyFractionDigits  *int   `yaml:"money.fraction.digits"`

	TombstonesOnDelete *bool      `yaml:"tombstones.on.delete"`
	SkippedOperations  StringList `yaml:"skipped.operations"` // c, u, d, t, none
	// SkippedOperationsSet records that skipped.operations was given: Debezium then
	// restricts its publication to the other operations.
	SkippedOperationsSet        bool    `yaml:"-"`
	ProvideTransactionMetadata  bool    `yaml:"provide.transaction.metadata"`
	UnavailableValuePlaceholder *string `yaml:"unavailable.value.placeholder"`
	IncludeUnknownDatatypes     bool    `yaml:"include.unknown.datatypes"`

	MessagePrefixIncludeList StringList `yaml:"message.prefix.include.list"`
	MessagePrefixExcludeList StringList `yaml:"message.prefix.exclude.list"`

	HeartbeatIntervalMS  int    `yaml:"heartbeat.interval.ms"`
	HeartbeatActionQuery string `yaml:"heartbeat.action.query"`

	TopicDelimiter       string `yaml:"topic.delimiter"`
	TopicTransaction     string `yaml:"topic.transaction"`
	TopicHeartbeatPrefix string `yaml:"topic.heartbeat.prefix"`

	SchemaNameAdjustmentMode string `yaml:"schema.name.adjustment.mode"` // none | avro
	FieldNameAdjustmentMode  string `yaml:"field.name.adjustment.mode"`  // none | avro
}

// Skips reports whether skipped.operations names op (one of c, u, d, t).
func (d *Debezium) Skips(op string) bool {
	for _, s := range d.SkippedOperations {
		if s == op {
			return true
		}
	}
	return false
}

func (d *Debezium) applyDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&d.DecimalHandlingMode, "precise")
	def(&d.TimePrecisionMode, "adaptive")
	def(&d.BinaryHandlingMode, "bytes")
	def(&d.HstoreHandlingMode, "json")
	def(&d.IntervalHandlingMode, "numeric")
	def(&d.TopicDelimiter, ".")
	def(&d.TopicTransaction, "transaction")
	def(&d.TopicHeartbeatPrefix, "__debezium-heartbeat")
	def(&d.SchemaNameAdjustmentMode, "none")
	def(&d.FieldNameAdjustmentMode, "none")
	if d.MoneyFractionDigits == nil {
		two := 2
		d.MoneyFractionDigits = &two
	}
	if d.TombstonesOnDelete == nil {
		t := true
		d.TombstonesOnDelete = &t
	}
	if d.UnavailableValuePlaceholder == nil {
		p := "__debezium_unavailable_value"
		d.UnavailableValuePlaceholder = &p
	}
	// Debezium skips truncates unless told otherwise; "none" means skip nothing.
	d.SkippedOperationsSet = d.SkippedOperations != nil
	switch {
	case d.SkippedOperations == nil:
		d.SkippedOperations = StringList{"t"}
	case len(d.SkippedOperations) == 1 && d.SkippedOperations[0] == "none":
		d.SkippedOperations = StringList{}
	}
}

func (d *Debezium) validate(errs *fieldErrors) {
	errs.oneOf("debezium.decimal.handling.mode", d.DecimalHandlingMode, "precise", "double", "string")
	errs.oneOf("debezium.time.precision.mode", d.TimePrecisionMode,
		"adaptive", "adaptive_time_microseconds", "connect", "isostring", "microseconds", "nanoseconds")
	errs.oneOf("debezium.binary.handling.mode", d.BinaryHandlingMode, "bytes", "base64", "base64-url-safe", "hex")
	errs.oneOf("debezium.hstore.handling.mode", d.HstoreHandlingMode, "json", "map")
	errs.oneOf("debezium.interval.handling.mode", d.IntervalHandlingMode, "numeric", "string")
	errs.oneOf("debezium.schema.name.adjustment.mode", d.SchemaNameAdjustmentMode, "none", "avro")
	errs.oneOf("debezium.field.name.adjustment.mode", d.FieldNameAdjustmentMode, "none", "avro")
	for _, op := range d.SkippedOperations {
		switch op {
		case "c", "u", "d", "t":
		default:
			errs.add("debezium.skipped.operations", "unknown operation %q: use a list of c, u, d, t, or none", op)
		}
	}
	if len(d.MessagePrefixIncludeList) > 0 && len(d.MessagePrefixExcludeList) > 0 {
		errs.add("debezium.message.prefix.include.list", "cannot be used together with message.prefix.exclude.list")
	}
}
