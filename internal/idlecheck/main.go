// Command idlecheck measures what an idle Pulse connection costs: it opens
// -n connections on loopback (both ends in this process), makes one call
// on each, lets them sit idle with heartbeats on, and reports the Go heap
// and stack in use, and the goroutines, per connection pair.
//
//	go run ./internal/idlecheck -n 2000
//
// It counts Go memory only (not the kernel's socket buffers); the
// benchmark module measures process RSS.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/pulse-rpc/pulse"
)

// Echo is the service called once per connection.
type Echo struct{}

// Echo replies with its argument.
func (Echo) Echo(a string, r *string) error { *r = a; return nil }

// inUse returns the heap and stack in use after a full collection.
func inUse() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

func main() {
	n := flag.Int("n", 2000, "connections to open (mind the open-file limit: two descriptors each)")
	interval := flag.Duration("interval", time.Second, "heartbeat interval")
	idle := flag.Duration("idle", 3*time.Second, "how long the connections sit idle before measuring")
	flag.Parse()
	hb := pulse.WithHeartbeat(pulse.Heartbeat{Interval: *interval, Timeout: 4 * *interval})
	srv, err := pulse.NewServer(hb)
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Register(Echo{}); err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	before, g0 := inUse(), runtime.NumGoroutine()
	clients := make([]*pulse.Client, 0, *n)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := 0; i < *n; i++ {
		c, err := pulse.Dial(context.Background(), l.Addr().String(), hb)
		if err != nil {
			log.Fatalf("connection %d: %v", i, err)
		}
		clients = append(clients, c)
		var r string
		if err := c.Call(context.Background(), "Echo.Echo", "hi", &r); err != nil {
			log.Fatalf("call %d: %v", i, err)
		}
	}
	time.Sleep(*idle)
	after := inUse()
	fmt.Printf("%d idle connections, heartbeat %v: %.1f KiB of Go heap and stack per connection pair (client and server side), %.1f goroutines per pair\n",
		*n, *interval, float64(after-before)/float64(*n)/1024, float64(runtime.NumGoroutine()-g0)/float64(*n))
}
