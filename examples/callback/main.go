// Command callback is a complete Pulse program: a service, a server, a
// client, a call, and a call from the server back to the client over the
// same connection.
package main

import (
	"context"
	"fmt"
	"log"
	"net"

	"github.com/pulse-rpc/pulse"
)

// Arith is the server's service. Methods have net/rpc's shape, optionally
// with a leading context.Context.
type Arith struct{}

type Args struct{ A, B int }

func (Arith) Add(ctx context.Context, args *Args, sum *int) error {
	*sum = args.A + args.B
	// Call the client back over the connection this call came in on.
	var name string
	if err := pulse.PeerFromContext(ctx).Call(ctx, "Client.Name", struct{}{}, &name); err != nil {
		return err
	}
	fmt.Printf("server: %s asked for %d+%d\n", name, args.A, args.B)
	return nil
}

// Client is the client's service, which the server calls.
type Client struct{ name string }

func (c *Client) Name(_ struct{}, reply *string) error {
	*reply = c.name
	return nil
}

func main() {
	srv, err := pulse.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Register(Arith{}); err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	ctx := context.Background()
	client, err := pulse.Dial(ctx, l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	if err := client.Register(&Client{name: "alice"}); err != nil {
		log.Fatal(err)
	}

	var sum int
	if err := client.Call(ctx, "Arith.Add", &Args{A: 2, B: 3}, &sum); err != nil {
		log.Fatal(err)
	}
	fmt.Println("client: 2+3 =", sum)
}
