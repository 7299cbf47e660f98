//go:build race

package pulse_test

// raceEnabled: the race detector is on. It makes sync.Pool drop a share of
// what is put in it on purpose, so allocation counts do not hold.
const raceEnabled = true
