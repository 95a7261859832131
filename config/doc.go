// Package config loads and validates procon-cdc's YAML configuration.
//
// Environment variables are expanded after the file is parsed, in scalar values only; keys are
// taken as written. ${VAR} is VAR's value, and an error naming the key and line when VAR is
// unset; ${VAR:-default} is default when VAR is unset or empty; $$ is a literal $. A value is
// inserted as text into its scalar, so nothing in it (#, *, &, ": ", quotes, newlines) can change
// the document. An unquoted scalar then has the type of its expanded text, as if written there
// (instance_num: ${N} is an integer), except that non-empty text is never null; a quoted one is a
// string; a key that holds a string takes the text as it is. Inside {...} or [...] a ${VAR} must
// be quoted, as a YAML plain scalar cannot contain braces there. Errors about an expanded value
// name the reference, "the value of ${PGPASS}", instead of showing it.
//
// Concurrency: Load and Parse return a new *Config that nothing changes afterwards; it may be
// read from any number of goroutines.
package config
