package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The procon-cdc binary, built once per test binary, with the race detector, for the tests that
// run it as a child process (kill -9, exit codes, its output).
var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// ProconBinary returns the path of a procon-cdc built from this tree.
func ProconBinary(t testing.TB) string {
	t.Helper()
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "procon-bin")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath = filepath.Join(dir, "procon-cdc")
		out, err := exec.Command("go", "build", "-race", "-o", binaryPath, "github.com/procon-cdc/procon/cmd/procon-cdc").CombinedOutput()
		if err != nil {
			binaryErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	return binaryPath
}
