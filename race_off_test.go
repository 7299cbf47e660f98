//go:build !race

package pulse_test

const raceEnabled = false
