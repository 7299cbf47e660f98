//go:build !race

package pulse

const raceEnabled = false
