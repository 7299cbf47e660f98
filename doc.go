/*
Package pulse is an RPC system for long-lived connections, in the model of
the standard library's net/rpc: register a value, call its methods by
"Service.Method", no code generation. To it Pulse adds contexts with
deadlines and cancellation, many calls multiplexed over one connection,
heartbeats that find a dead peer within a known bound, reconnection,
graceful draining, and calls from the server back to the client over the
same connection.

# Services

A service is any value whose exported methods have one of the shapes

	func (t *T) MethodName(args A, reply *R) error
	func (t *T) MethodName(ctx context.Context, args A, reply *R) error

where A and R are exported or builtin types, as in net/rpc. The context
carries the caller's deadline, ends when the caller cancels or the
connection dies, and gives the calling Peer (PeerFromContext), through
which the handler can call the client back or push to it. A method that
returns an error makes the call fail with a ServerError holding its text.

	type Arith struct{}

	type Args struct{ A, B int }

	func (Arith) Multiply(args *Args, reply *int) error {
		*reply = args.A * args.B
		return nil
	}

	func (Arith) Divide(ctx context.Context, args *Args, quo *int) error {
		if args.B == 0 {
			return errors.New("divide by zero")
		}
		*quo = args.A / args.B
		return nil
	}

# Serving

The server registers the value and serves a listener:

	srv, err := pulse.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Register(Arith{}); err != nil {
		log.Fatal(err)
	}
	go srv.ListenAndServe(":7000")
	// ... on the way out:
	srv.Shutdown(ctx) // no new calls; running handlers finish; then close

# Calling

A client dials once and keeps the connection, reconnecting with backoff
when it is lost; many goroutines may call through it at once:

	client, err := pulse.Dial(ctx, "server:7000")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	var product int
	err = client.Call(ctx, "Arith.Multiply", &Args{7, 8}, &product)

	// Asynchronously, as net/rpc's Go:
	quo := new(int)
	call := client.Go(ctx, "Arith.Divide", &Args{7, 8}, quo, nil)
	<-call.Done // call.Error says how it ended

# Errors

A method's own error is a ServerError. A call that failed on its own (an
unknown method, undecodable arguments, a deadline, a refusal) is a
*CallError with a Status; a lost connection is a *ConnError, whose Sent
field says whether the request may have run and whose Reason and Code say
why the connection closed. errors.Is matches the sentinels (ErrShutdown,
ErrPeerSilent, ErrUnknownMethod, context.DeadlineExceeded, ...). A call
that was never sent is retried on the next connection by itself.

# Liveness

Each side sends a PING after Heartbeat.Interval without writing anything;
the peer answers with a PONG. A side that reads nothing from its peer for
Heartbeat.Timeout declares it dead and fails its calls: a frozen process,
a pulled cable or a half-open TCP connection is found within Timeout plus
scheduling slack, and a slow but healthy link is never declared dead.
docs/liveness.md has the guarantee and every setting.

# Options and limits

NewServer, Dial and NewClient take Options. An option that only one side
uses (WithConnLimits, WithServerLimits and WithConnHook for servers;
WithDialer, WithBackoff, WithFailFast and WithStateHook for clients) is
refused by the other side with an error naming it. WithTLS on a Server
makes everything it serves TLS, whatever the listener.

A Server bounds what its peers can make it hold, each limit with a named
default in defaults.go: connections and pending handshakes, in total and
per remote IP, and handlers running across all connections
(WithServerLimits); handlers per connection (WithMaxConcurrentCalls);
message and frame sizes. Both sides bound the message bytes a peer can
make them hold, per connection (WithConnBudget, the flow-control window)
and together (WithSharedBudget), the bytes they queue for a peer
(WithMaxQueued, WithSlowConsumer), and how long a frame or message the
peer started may go without progress (WithMessageTimeout). A peer that
reaches a limit gets an error naming it. docs/limits.md lists them all.

# Structure

This package is the public API. One connection's machinery (framing,
reader and writer, call table, heartbeats, draining) lives in
internal/session, the method registry in internal/service, buffer pools
in internal/bufpool and everything that touches a socket's descriptor in
internal/sock; the wire format is package wire (wire/PROTOCOL.md), the
codecs package codec, the failure detectors package liveness.
docs/architecture.md describes the layers and who owns each piece of a
connection's state.
*/
package pulse
