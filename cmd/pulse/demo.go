package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pulse-rpc/pulse"
)

func init() {
	register(&command{name: "demo", short: "run a server and a client in this process and show them talking", run: runDemo})
}

// ChatClient is the service a demo client registers, so that the server
// can push chat lines to it over the client's own connection.
type ChatClient struct {
	name  string
	lines chan<- string
}

// Message receives a line pushed by the server.
func (c *ChatClient) Message(line *ChatLine, _ *struct{}) error {
	c.lines <- fmt.Sprintf("%s got push: <%s> %s", c.name, line.From, line.Text)
	return nil
}

// Whoami is called back by the server while a call is in flight.
func (c *ChatClient) Whoami(_ struct{}, reply *string) error {
	*reply = c.name
	return nil
}

// Greeter greets a client by first asking the client who it is: a
// server-to-client call made from inside a client-to-server call.
type Greeter struct{}

// Hello calls the caller's ChatClient.Whoami and greets it by name.
func (Greeter) Hello(ctx context.Context, _ struct{}, reply *string) error {
	var name string
	if err := pulse.PeerFromContext(ctx).Call(ctx, "ChatClient.Whoami", struct{}{}, &name); err != nil {
		return err
	}
	*reply = "hello, " + name
	return nil
}

func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "[flags]", stderr)
	calls := fs.Int("calls", 100, "number of concurrent calls in the load step")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *calls < 1 {
		return usageError{"-calls must be at least 1"}
	}
	start := time.Now()
	var outMu sync.Mutex
	say := func(who, format string, a ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(stdout, "%7.3fs  %-8s %s\n", time.Since(start).Seconds(), who, fmt.Sprintf(format, a...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	srv, err := pulse.NewServer()
	if err != nil {
		return err
	}
	if err := registerDemoServices(srv); err != nil {
		return err
	}
	if err := srv.Register(Greeter{}); err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	say("server", "listening on %s", l.Addr())

	lines := make(chan string, 16)
	var clients []*pulse.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for _, name := range []string{"alice", "bob"} {
		c, err := pulse.Dial(ctx, l.Addr().String())
		if err != nil {
			return err
		}
		clients = append(clients, c)
		if err := c.Register(&ChatClient{name: name, lines: lines}); err != nil {
			return err
		}
		say(name, "connected (codec %s)", c.Peer().Codec())
	}
	alice, bob := clients[0], clients[1]

	var sum int
	if err := alice.Call(ctx, "Arith.Add", &ArithArgs{A: 2, B: 3}, &sum); err != nil {
		return err
	}
	say("alice", "Arith.Add(2, 3) = %d", sum)

	var q Quotient
	err = alice.Call(ctx, "Arith.Divide", &ArithArgs{A: 1, B: 0}, &q)
	say("alice", "Arith.Divide(1, 0) -> error %q (a %T from the method)", err, err)

	err = alice.Call(ctx, "Arith.Sqrt", &ArithArgs{A: 1}, &q)
	say("alice", "Arith.Sqrt -> %v", err)

	var greeting string
	if err := bob.Call(ctx, "Greeter.Hello", struct{}{}, &greeting); err != nil {
		return err
	}
	say("bob", "Greeter.Hello = %q (the server called bob back to ask his name)", greeting)

	// Many calls at once over one connection; replies come back in any order.
	t0 := time.Now()
	done := make(chan *pulse.Call, *calls)
	for i := 0; i < *calls; i++ {
		alice.Go(ctx, "Arith.Multiply", &ArithArgs{A: i, B: i}, new(int), done)
	}
	for i := 0; i < *calls; i++ {
		c := <-done
		if c.Error != nil {
			return c.Error
		}
		a := c.Args.(*ArithArgs)
		if got := *c.Reply.(*int); got != a.A*a.B {
			return fmt.Errorf("Arith.Multiply(%d, %d) = %d", a.A, a.B, got)
		}
	}
	say("alice", "%d concurrent calls over one connection in %v", *calls, time.Since(t0).Round(time.Microsecond))

	// Pushes: the chat room broadcasts to every connected client.
	var n int
	if err := alice.Call(ctx, "Chat.Join", &ChatJoin{Name: "alice"}, &n); err != nil {
		return err
	}
	if err := alice.Call(ctx, "Chat.Say", &ChatLine{Text: "hi all"}, &n); err != nil {
		return err
	}
	for i := 0; i < 2*len(clients); i++ {
		select {
		case line := <-lines:
			say("push", "%s", line)
		case <-ctx.Done():
			return fmt.Errorf("waiting for pushes: %w", ctx.Err())
		}
	}

	for _, c := range clients {
		c.Close()
	}
	clients = nil
	if err := srv.Close(); err != nil {
		return err
	}
	if err := <-served; err != pulse.ErrServerClosed {
		return fmt.Errorf("Serve returned %v", err)
	}
	say("server", "closed")
	return nil
}
