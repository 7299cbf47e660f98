// Package adversary holds the adversarial test suite of issue 19: each test
// plays an attack, as a hostile peer would, against a real server or client
// process (adversary/target) and asserts bounds on what the attack made
// that process hold — peak Go heap and RSS against the configured budgets
// times a stated factor, goroutines, log lines — while legitimate clients
// are still served and every legitimate call ends in success or a typed
// error.
//
// The tests have the build tag adversary (they take a few minutes and
// several hundred MiB):
//
//	go test -tags adversary -count=1 -timeout 10m -v ./adversary/
//
// README.md in this directory explains the bounds and how to print the
// table of measured peaks.
package adversary
