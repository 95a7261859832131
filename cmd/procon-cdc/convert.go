package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"

	"github.com/procon-cdc/procon/convert"
)

// cmdConvert writes the procon-cdc configuration equivalent to a Debezium connector's, and
// lists on stderr what became of each property. Exit 1 when some property that changes the
// records could not be mapped, 2 for bad flags or input.
func cmdConvert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("debezium", "", "the connector's configuration: a .properties file, or Kafka Connect's JSON ({\"name\", \"config\"} or the config map)")
	out := fs.String("o", "", "write the YAML to this file (default: stdout)")
	dsn := fs.String("dsn", "", "match include lists that are patterns against this database's tables")
	inline := fs.Bool("inline-secrets", false, "write passwords into the YAML instead of ${VAR} references")
	if err := fs.Parse(args); err != nil {
		return &exitError{2, err}
	}
	if *in == "" || fs.NArg() > 0 {
		fs.Usage()
		return &exitError{2, errors.New("convert: --debezium FILE is required")}
	}
	data, err := readLimited(*in, convert.MaxInputBytes)
	if err != nil {
		return &exitError{2, fmt.Errorf("convert: %w", err)}
	}
	props, err := convert.Load(data)
	if err != nil {
		return &exitError{2, fmt.Errorf("convert: %s: %w", *in, err)}
	}
	opts := convert.Options{InlineSecrets: *inline}
	if *dsn != "" {
		opts.Tables = convert.Database{DSN: *dsn}
	}
	res, err := convert.Convert(ctx, props, opts)
	if err != nil {
		return &exitError{2, fmt.Errorf("convert: %s: %w", *in, err)}
	}
	if *out != "" {
		err = os.WriteFile(*out, res.YAML, 0o600)
	} else {
		_, err = stdout.Write(res.YAML)
	}
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	for _, f := range res.Findings {
		fmt.Fprintln(stderr, formatFinding(f))
	}
	if bad := res.Unsupported(); len(bad) > 0 {
		var keys []string
		for _, f := range bad {
			if f.Key != "" {
				keys = append(keys, f.Key)
			}
		}
		msg := fmt.Sprintf("convert: %d thing(s) would change the records and could not be mapped", len(bad))
		if len(keys) > 0 {
			msg += ": " + strings.Join(keys, ", ")
		}
		return &exitError{1, errors.New(msg)}
	}
	return nil
}

func formatFinding(f convert.Finding) string {
	label := map[convert.Kind]string{convert.Mapped: "mapped", convert.Note: "note", convert.Ignored: "ignored", convert.Unsupported: "UNSUPPORTED"}[f.Kind]
	s := fmt.Sprintf("%-11s ", label)
	if f.Key != "" {
		key := f.Key
		if strings.ContainsFunc(key, unicode.IsControl) {
			key = strconv.Quote(key) // a key from the file stays on its line
		}
		s += key
	} else {
		s += "(configuration)"
	}
	if f.To != "" {
		s += " -> " + f.To
	}
	if f.Why != "" {
		s += ": " + f.Why
	}
	return s
}

// readLimited reads a file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}
