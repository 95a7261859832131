package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// numericKey is a numeric field of Config: its pattern (as bounds lists it), the keys leading
// to it, and its type.
type numericKey struct {
	pattern string
	keys    []string
	t       reflect.Type
}

// numericKeys walks the Config type for every field that holds a number.
func numericKeys(t reflect.Type, keys []string, out *[]numericKey) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case numeric(t):
		*out = append(*out, numericKey{pattern: strings.Join(keys, "."), keys: append([]string(nil), keys...), t: t})
	case t.Kind() == reflect.Struct:
		for i := range t.NumField() {
			if name := yamlName(t.Field(i)); name != "" {
				numericKeys(t.Field(i).Type, append(keys, name), out)
			}
		}
	case t.Kind() == reflect.Map:
		numericKeys(t.Elem(), append(keys, "*"), out)
	case t.Kind() == reflect.Slice:
		if numeric(t.Elem()) {
			*out = append(*out, numericKey{pattern: strings.Join(keys, "."), keys: keys, t: t})
		}
	}
}

func allNumericKeys(t *testing.T) []numericKey {
	t.Helper()
	var keys []numericKey
	numericKeys(reflect.TypeFor[Config](), nil, &keys)
	sort.Slice(keys, func(i, j int) bool { return keys[i].pattern < keys[j].pattern })
	return keys
}

// A numeric key added to Config without a bound fails here: give it one in bounds.go (and in
// the README's table of keys).
func TestEveryNumericKeyHasABound(t *testing.T) {
	inType := map[string]bool{}
	for _, k := range allNumericKeys(t) {
		inType[k.pattern] = true
		if k.t.Kind() == reflect.Slice {
			t.Errorf("%s is a list of numbers: bounds cannot check it yet", k.pattern)
			continue
		}
		b, ok := bounds[k.pattern]
		if !ok {
			t.Errorf("numeric key %s (%s) has no entry in bounds: give it a lower and an upper bound", k.pattern, k.t)
			continue
		}
		if b.min > b.max {
			t.Errorf("%s: min %d is above max %d", k.pattern, b.min, b.max)
		}
		if lo, hi := typeRange(k.t); b.min < lo || b.max > hi {
			t.Errorf("%s: bound %d..%d does not fit its type %s (%d..%d)", k.pattern, b.min, b.max, k.t, lo, hi)
		}
		if b.duration != (k.t == durationType) {
			t.Errorf("%s: duration is %v, want %v", k.pattern, b.duration, k.t == durationType)
		}
	}
	for p := range bounds {
		if !inType[p] {
			t.Errorf("bounds lists %s, which is not a numeric key of Config", p)
		}
	}
}

// typeRange is what a field of integer type t can hold, on the machine the test runs on.
func typeRange(t reflect.Type) (int64, int64) {
	if t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uintptr {
		return 0, 1<<min(t.Bits(), 63) - 1
	}
	if t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64 {
		return -1 << 53, 1 << 53
	}
	return -1 << (t.Bits() - 1), 1<<(t.Bits()-1) - 1
}

// setting is one value to write at keys ("*" is a relation).
type setting struct {
	keys  []string
	value any
}

// parseWith parses the minimal configuration with settings added.
func parseWith(t *testing.T, settings ...setting) error {
	t.Helper()
	doc := map[string]any{
		"name":             "demo",
		"postgres":         map[string]any{"dsn": "postgres://x"},
		"kafka":            map[string]any{"brokers": "127.0.0.1:9092"},
		"relation_configs": map[string]any{"public.accounts": map[string]any{}},
	}
	for _, st := range settings {
		m := doc
		for i, k := range st.keys {
			if k == "*" {
				k = "public.accounts"
			}
			if i == len(st.keys)-1 {
				m[k] = st.value
				break
			}
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
	}
	text, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(strings.NewReader(string(text)), env(nil))
	return err
}

// besides are the settings another key's bound needs to be tested alone.
var besides = map[string][]setting{
	// kafka.max_buffered_bytes must hold a record of kafka.max_record_bytes.
	"kafka.max_record_bytes":   {{[]string{"kafka", "max_buffered_bytes"}, 1 << 30}},
	"kafka.max_buffered_bytes": {{[]string{"kafka", "max_record_bytes"}, MinMaxRecordBytes}},
	// realtime.max_queue_bytes must hold a notification of realtime.max_notification_bytes.
	"realtime.max_queue_bytes": {{[]string{"realtime", "max_notification_bytes"}, 1}},
}

// raw is a YAML scalar written as it is, typed by the parser from its text.
func raw(text string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: text} }

// Every numeric key takes its bounds and refuses what lies past them, a value too large for
// any integer included, with an error naming the key and the range.
func TestNumericBounds(t *testing.T) {
	for _, k := range allNumericKeys(t) {
		b, ok := bounds[k.pattern]
		if !ok {
			continue // TestEveryNumericKeyHasABound reports it
		}
		t.Run(k.pattern, func(t *testing.T) {
			show := func(v int64) any {
				if b.duration {
					return time.Duration(v).String()
				}
				return v
			}
			step := int64(1)
			if b.duration {
				step = int64(time.Millisecond)
			}
			accepted := []any{show(b.min), show(b.max)}
			if b.zero != "" || b.defaulted {
				accepted = append(accepted, 0)
			}
			refused := []any{show(b.max + step), raw("99999999999999999999"), raw("-99999999999999999999")}
			if b.min-step != 0 || (b.zero == "" && !b.defaulted) {
				refused = append(refused, show(b.min-step))
			}
			if b.duration {
				// Integers of milliseconds, whose conversion into a time.Duration would wrap.
				refused = append(refused, raw(strconv.FormatInt(maxDurationMS+1, 10)), raw("9223372036854775807"), "-1ms")
			}
			for _, v := range accepted {
				if err := parseWith(t, append(besides[k.pattern], setting{k.keys, v})...); err != nil {
					t.Errorf("%v refused: %v", v, err)
				}
			}
			want := fmt.Sprintf("from %d to %d", b.min, b.max)
			if b.duration {
				want = fmt.Sprintf("from %s to %s", time.Duration(b.min), time.Duration(b.max))
			}
			path := strings.ReplaceAll(k.pattern, "*", "public.accounts")
			for _, v := range refused {
				err := parseWith(t, append(besides[k.pattern], setting{k.keys, v})...)
				if err == nil {
					t.Errorf("%v accepted, want it refused", show2(v))
					continue
				}
				if !strings.Contains(err.Error(), path+": ") || !strings.Contains(err.Error(), want) {
					t.Errorf("%v: error %q does not name %s and say %q", show2(v), err, path, want)
				}
			}
		})
	}
}

func show2(v any) any {
	if n, ok := v.(*yaml.Node); ok {
		return n.Value
	}
	return v
}

// The conversions the bounds protect: the largest accepted values convert without wrapping.
func TestBoundsFitTheirConversions(t *testing.T) {
	for _, key := range []string{"kafka.max_record_bytes", "kafka.max_buffered_bytes"} {
		if b := bounds[key]; b.max > 1<<30 {
			t.Errorf("%s max %d is above the producer's 1 GiB limit (and int32 conversions)", key, b.max)
		}
	}
	for _, key := range []string{"debezium.heartbeat.interval.ms", "realtime.rt_threshold", "relation_configs.*.rt_threshold"} {
		b := bounds[key]
		if d := time.Duration(b.max) * time.Millisecond; d <= 0 || d/time.Millisecond != time.Duration(b.max) {
			t.Errorf("%s max %d ms wraps as a time.Duration", key, b.max)
		}
	}
}

func TestBufferSmallerThanARecordRefused(t *testing.T) {
	err := parseWith(t, setting{[]string{"kafka", "max_record_bytes"}, 32 << 20})
	if err == nil || !strings.Contains(err.Error(), "kafka.max_buffered_bytes: 16777216 is less than kafka.max_record_bytes") {
		t.Fatalf("got %v, want max_buffered_bytes refused for being below max_record_bytes", err)
	}
}
