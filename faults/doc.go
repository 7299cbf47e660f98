// Package faults proves Pulse's liveness guarantee (docs/liveness.md) on a
// real, virtual network. It holds no library code: its tests, built only
// with the "faults" tag on Linux, put a Pulse server and Pulse clients in
// separate network namespaces joined through a third, "router" namespace,
// run real processes built from the repository (faults/agent), and inject
// faults in the router namespace only, so that neither endpoint's kernel
// sees them: nftables drops for a blackhole, one dropped direction and
// random loss, tc tbf for bandwidth and deep queues, and a delaying TCP
// relay for latency and jitter (the kernel may lack netem). Other faults
// are done to the processes: SIGSTOP, SIGKILL, CPU starvation and long
// stop-the-world garbage collections.
//
// The tests need root, ip (iproute2), nft (nftables), tc and taskset; they
// skip without them, except in CI (CI=true), where they fail:
//
//	sudo go test -tags faults -count=1 -timeout 20m -v ./faults/
//
// Each scenario records its measurements in a results file (-results, or
// $PULSE_FAULTS_RESULTS); with -write-doc the run also writes
// docs/faults.md and faults/testdata/results.json:
//
//	sudo go test -tags faults -count=1 -timeout 20m -v ./faults/ -args -write-doc
package faults
