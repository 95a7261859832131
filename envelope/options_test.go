package envelope

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/procon-cdc/procon/config"
)

func parseDebezium(t *testing.T, key, value string) (*config.Config, error) {
	t.Helper()
	text := fmt.Sprintf("name: demo\npostgres:\n  dsn: postgres://x\nkafka:\n  brokers: 127.0.0.1:9092\n"+
		"relation_configs:\n  public.a: {}\ndebezium:\n  %s: %q\n", key, value)
	return config.Parse(strings.NewReader(text), func(string) (string, bool) { return "", false })
}

// TestModeNames keeps the mode names in step with the configuration: config validation and
// OptionsFrom accept the same names, each name gives the mode whose String it is, and an
// unknown name is an error naming the key.
func TestModeNames(t *testing.T) {
	mode := func(f func(o Options) fmt.Stringer) func(o Options) string {
		return func(o Options) string { return f(o).String() }
	}
	for _, c := range []struct {
		key   string
		names []string
		got   func(o Options) string
	}{
		{"decimal.handling.mode", decimalModes, mode(func(o Options) fmt.Stringer { return o.DecimalMode })},
		{"time.precision.mode", timePrecisions, mode(func(o Options) fmt.Stringer { return o.TimePrecisionMode })},
		{"binary.handling.mode", binaryModes, mode(func(o Options) fmt.Stringer { return o.BinaryMode })},
		{"hstore.handling.mode", hstoreModes, mode(func(o Options) fmt.Stringer { return o.HstoreMode })},
		{"interval.handling.mode", intervalModes, mode(func(o Options) fmt.Stringer { return o.IntervalMode })},
		{"schema.name.adjustment.mode", nameAdjustments, mode(func(o Options) fmt.Stringer { return o.SchemaNameAdjust })},
		{"field.name.adjustment.mode", nameAdjustments, mode(func(o Options) fmt.Stringer { return o.FieldNameAdjust })},
	} {
		// The names config accepts, from its refusal of an unknown one.
		_, err := parseDebezium(t, c.key, "bogus")
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Key != "debezium."+c.key {
			t.Fatalf("%s: config accepted bogus or named another key: %v", c.key, err)
		}
		_, list, _ := strings.Cut(fe.Problem, "is not one of ")
		if accepted := strings.Split(list, ", "); !reflect.DeepEqual(accepted, c.names) {
			t.Errorf("%s: config accepts %q, envelope knows %q", c.key, accepted, c.names)
		}
		for _, name := range c.names {
			cfg, err := parseDebezium(t, c.key, name)
			if err != nil {
				t.Fatalf("%s: %s: %v", c.key, name, err)
			}
			o, err := OptionsFrom(&cfg.Debezium)
			if err != nil {
				t.Fatalf("%s: %s: %v", c.key, name, err)
			}
			if got := c.got(o); got != name {
				t.Errorf("%s: %s gives the mode %s", c.key, name, got)
			}
		}
		// Past config validation (a config built in code), OptionsFrom still refuses.
		cfg, err := parseDebezium(t, c.key, c.names[0])
		if err != nil {
			t.Fatal(err)
		}
		d := cfg.Debezium
		reflect.ValueOf(&d).Elem().FieldByNameFunc(func(n string) bool {
			f, _ := reflect.TypeOf(d).FieldByName(n)
			return f.Tag.Get("yaml") == c.key
		}).SetString("bogus")
		if _, err := OptionsFrom(&d); err == nil || !strings.Contains(err.Error(), "debezium."+c.key+`: "bogus" is not one of`) {
			t.Errorf("%s: OptionsFrom with an unknown name: got %v", c.key, err)
		}
	}
	// The zero value of every mode is Debezium's default, as config fills it in.
	cfg, err := config.Parse(strings.NewReader("name: demo\npostgres:\n  dsn: postgres://x\nkafka:\n  brokers: b:9092\nrelation_configs:\n  public.a: {}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if o, err := OptionsFrom(&cfg.Debezium); err != nil || !reflect.DeepEqual(o, DefaultOptions()) {
		t.Errorf("defaults: got %+v, %v; want %+v", o, err, DefaultOptions())
	}
}
