//go:build race

package envelope

// The race detector makes sync.Pool drop what it holds at random (regexp machines among
// them), so allocation bounds are not checked under it.
const raceEnabled = true
