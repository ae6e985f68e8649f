//go:build race

package mask

// raceEnabled: under the race detector sync.Pool drops items on purpose,
// so tests of pooled reuse measure nothing.
const raceEnabled = true
