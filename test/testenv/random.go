package testenv

import (
	mathrand "math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// Rand returns a random source for one goroutine of a test, seeded from PROCON_TEST_SEED when
// it is set and randomly otherwise. The seed is logged, so a failure's random choices can be
// replayed (PROCON_TEST_SEED=<seed> go test -run <Test> ...). stream tells apart the sources
// of one test's goroutines: a *rand.Rand is not safe for concurrent use.
func Rand(t testing.TB, stream uint64) *mathrand.Rand {
	t.Helper()
	seed := mathrand.Uint64()
	if s := os.Getenv("PROCON_TEST_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("testenv: PROCON_TEST_SEED=%q is not an unsigned integer", s)
		}
		seed = n
	}
	t.Logf("random stream %d: seed %d (replay with PROCON_TEST_SEED=%d)", stream, seed, seed)
	return mathrand.New(mathrand.NewPCG(seed, stream))
}
