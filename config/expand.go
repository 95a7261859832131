package config

import (
	"fmt"
	"os"
	"strings"
)

// expandEnv replaces ${VAR} and ${VAR:-default} in the raw configuration text with values from
// lookup. "$$" stands for a literal "$". A ${VAR} whose variable is unset is an error naming the
// line, so that a missing DSN is reported as such rather than as an empty string later.
func expandEnv(src string, lookup func(string) (string, bool)) (string, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var b strings.Builder
	b.Grow(len(src))
	line := 1
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c == '\n' {
			line++
		}
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(src) && src[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if i+1 >= len(src) || src[i+1] != '{' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(src[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("line %d: unterminated ${ (write $$ for a literal $)", line)
		}
		expr := src[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("line %d: ${%s} is not a valid variable reference: use ${NAME} or ${NAME:-default}", line, expr)
		}
		val, ok := lookup(name)
		switch {
		case ok && (val != "" || !hasDef):
			b.WriteString(val)
		case hasDef:
			b.WriteString(def)
		default:
			return "", fmt.Errorf("line %d: environment variable %s is not set (set it, or write ${%s:-default})", line, name, name)
		}
		i += end
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9') {
			continue
		}
		return false
	}
	return true
}
