// Command pulse-bench compares Pulse with net/rpc, grpc-go and a raw-TCP
// reference: throughput, latency, allocations, CPU and system calls per
// call under load, and the cost of idle connections with heartbeats.
//
// Run it from the repository root:
//
//	go -C bench run .          # full run, writes docs/benchmarks.md and .svg
//	go -C bench run . -quick   # smoke run into a temporary directory
//
// The program is its own driver: it re-executes its binary as a server
// process and a client process for every run (hidden subcommands
// __server, __load and __idle), so that the two ends never share a Go
// runtime, and collects their JSON answers.
package main

import (
	"os"
	"strings"
)

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "__") {
		os.Exit(childMain(os.Args[1], os.Args[2:]))
	}
	os.Exit(driverMain(os.Args[1:]))
}
