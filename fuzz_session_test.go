package pulse_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/wire"
)

// FuzzSession sends a server, after a valid handshake, whatever bytes the
// fuzzer makes: frames of every type, in any order, with any ids, flags,
// lengths and payloads, cut off anywhere. Whatever a peer sends, the
// server must not crash, must send only well-formed frames, must close the
// connection once the peer has half-closed it, and must go on serving
// other clients.
func FuzzSession(f *testing.F) {
	call := func(id uint32, method, args string) []byte {
		b := wire.AppendHeader(nil, wire.TypeCall, wire.FlagEnd, id, 0)
		b = wire.AppendCallHead(b, method, time.Second)
		b = append(b, args...)
		wire.PutLength(b, len(b)-wire.HeaderSize)
		return b
	}
	cat := func(frames ...[]byte) []byte {
		var b []byte
		for _, fr := range frames {
			b = append(b, fr...)
		}
		return b
	}
	msg := wire.AppendCallHead(nil, "Fuzz.Add", 0)
	msg = append(msg, `{"A":1,"B":2}`...)
	split := cat(
		wire.AppendFrame(nil, wire.TypeCall, 0, 5, append(wire.AppendMessageLen(nil, len(msg)), msg[:4]...)),
		wire.AppendFrame(nil, wire.TypeContinuation, wire.FlagEnd, 5, msg[4:]),
	)
	notify := append([]byte(nil), call(7, "Fuzz.Echo", `"n"`)...)
	notify[1] = byte(wire.TypeNotify)
	for _, seed := range [][]byte{
		call(1, "Fuzz.Echo", `"hello"`),
		cat(call(1, "Fuzz.Add", `{"A":1,"B":2}`), call(3, "Fuzz.AddCtx", `{"A":3,"B":4}`), call(5, "Fuzz.Fail", `0`)),
		split,
		notify,
		cat(call(1, "Fuzz.Nope", `1`), call(3, "Nope.Echo", `"x"`), call(5, "Fuzz.Add", `"not args"`)),
		wire.AppendPing(nil, wire.TypePing, 42),
		cat(call(9, "Fuzz.AddCtx", `{"A":1,"B":1}`), wire.AppendHeader(nil, wire.TypeCancel, 0, 9, 0)),
		wire.AppendFrame(nil, wire.TypeCall, 0, 11, append(wire.AppendMessageLen(nil, 1<<20), 1, 2, 3)),
		cat(wire.AppendFrame(nil, wire.TypeCall, 0, 13, append(wire.AppendMessageLen(nil, len(msg)), msg[:4]...)),
			wire.AppendHeader(nil, wire.TypeContinuation, wire.FlagEnd|wire.FlagAbort, 13, 0)),
		wire.AppendGoAway(nil, wire.GoAway{LastID: 0, Code: wire.GoAwayNormal, Message: "bye"}),
		wire.AppendFrame(nil, wire.TypeReply, wire.FlagEnd, 2, []byte{0}),
		call(1, "Fuzz.Echo", `"cut`)[:20],
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	} {
		f.Add(seed)
	}

	srv, err := pulse.NewServer(
		pulse.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		pulse.WithMaxMessageSize(64<<10),
	)
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Register(new(Fuzz)); err != nil {
		f.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	f.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, pulse.ErrServerClosed) {
			f.Errorf("Serve() = %v, want %v", err, pulse.ErrServerClosed)
		}
	})
	client, err := pulse.Dial(context.Background(), l.Addr().String())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { client.Close() })

	f.Fuzz(func(t *testing.T, data []byte) {
		conn := dialRaw(t, l.Addr().String())
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fr := rawHandshake(t, conn)

		// Read what the server sends while the input goes out: it must
		// be frames, up to the moment the server closes.
		readErr := make(chan error, 1)
		go func() {
			for {
				if _, _, err := fr.ReadFrame(); err != nil {
					readErr <- err
					return
				}
			}
		}()
		if _, err := conn.Write(data); err != nil && !isConnClosed(err) {
			t.Fatalf("writing the input failed: %v", err)
		}
		conn.(*net.TCPConn).CloseWrite()
		if err := <-readErr; !isConnClosed(err) {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server did not close the connection within 5 s of the client's EOF")
			}
			t.Fatalf("the server sent a malformed frame: %v", err)
		}

		var r Reply
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := client.Call(ctx, "Fuzz.Add", Args{20, 22}, &r); err != nil || r.C != 42 {
			t.Fatalf("after the input, Call(Fuzz.Add) = %d, %v; want 42, nil", r.C, err)
		}
	})
}

// isConnClosed reports whether err is how a read or write ends on a
// connection that the peer closed or reset.
func isConnClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Fuzz is the service FuzzSession calls: quick methods of several shapes.
type Fuzz struct{}

func (Fuzz) Echo(s string, reply *string) error {
	*reply = s
	return nil
}

func (Fuzz) Add(args Args, reply *Reply) error {
	reply.C = args.A + args.B
	return nil
}

func (Fuzz) AddCtx(ctx context.Context, args *Args, reply *Reply) error {
	reply.C = args.A + args.B
	return ctx.Err()
}

func (Fuzz) Fail(n int, reply *int) error { return errors.New("failed as asked") }
