package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The procon-cdc binaries, each built once per test binary, for the tests that run it as a child
// process (kill -9, exit codes, its output).
type builtBinary struct {
	once sync.Once
	path string
	err  error
}

var raceBinary, releaseBinary builtBinary

// ProconBinary returns the path of a procon-cdc built from this tree with the race detector.
func ProconBinary(t testing.TB) string {
	t.Helper()
	return raceBinary.build(t, "-race")
}

// ProconReleaseBinary returns the path of a procon-cdc built from this tree without the race
// detector, as users run it: for measuring its memory, which the race detector's shadow memory
// would multiply.
func ProconReleaseBinary(t testing.TB) string {
	t.Helper()
	return releaseBinary.build(t)
}

func (b *builtBinary) build(t testing.TB, flags ...string) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "procon-bin")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "procon-cdc")
		args := append(append([]string{"build"}, flags...), "-o", b.path, "github.com/procon-cdc/procon/cmd/procon-cdc")
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}
