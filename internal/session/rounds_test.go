//go:build linux

package session

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/internal/service"
	"github.com/pulse-rpc/pulse/wire"
)

// bufferControl returns a socket option setter for net.ListenConfig and
// net.Dialer that sets opt (SO_SNDBUF, SO_RCVBUF) to size.
func bufferControl(opt, size int) func(_, _ string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, size)
		}); err != nil {
			return err
		}
		return serr
	}
}

// startRoundsDialer runs the dialer's side of a session on conn (the
// handshake, with cfg and no services of its own), without tuning conn;
// on success it starts the reader and returns the session, which the
// caller closes (closeRoundsDialer).
func startRoundsDialer(conn net.Conn, cfg *Config) (*Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	s, err := Start(ctx, conn, true, cfg, service.NewRegistry(), func(*Session) Hooks { return Hooks{} })
	if err != nil {
		return nil, err
	}
	go s.ReadLoop()
	return s, nil
}

// closeRoundsDialer closes s and waits for its reader to end.
func closeRoundsDialer(s *Session) {
	s.Close()
	<-s.ReaderDone()
}

// TestPingAheadOfLargeMessage: when the peer stops reading in the middle
// of a large message and a PING is queued meanwhile, the PING goes out
// after the round under way: the data ahead of it is what the two sockets
// held, plus at most one round (maxWriteSize). The message still arrives
// whole and in order.
func TestPingAheadOfLargeMessage(t *testing.T) {
	const (
		size   = 8 << 20
		rcvBuf = 64 << 10 // the kernel doubles it
	)
	lc := net.ListenConfig{Control: bufferControl(syscall.SO_RCVBUF, rcvBuf)}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, _ := l.Accept() // nil on failure
		accepted <- conn
	}()

	cfg := testConfig(Heartbeat{Interval: time.Minute, Timeout: 10 * time.Minute})
	cfg.Codecs = []string{codec.RawName}
	type dialResult struct {
		s   *Session
		err error
	}
	dialed := make(chan dialResult, 1)
	go func() {
		conn, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			dialed <- dialResult{err: err}
			return
		}
		Tune(conn) // as the root's Dial does
		s, err := startRoundsDialer(conn, cfg)
		dialed <- dialResult{s, err}
	}()
	conn := <-accepted
	if conn == nil {
		t.Fatal("accept failed")
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fr := wire.NewReader(conn, 32<<10)
	if h, _, err := fr.ReadFrame(); err != nil || h.Type != wire.TypeHello {
		t.Fatalf("client's first frame = %v, %v; want HELLO", h, err)
	}
	b, err := wire.AppendHello(nil, wire.Hello{Role: wire.RoleAcceptor, MaxFrameSize: wire.DefaultMaxFrameSize,
		MaxMessageSize: 16 << 20, InitialWindow: 32 << 20, Codecs: []string{codec.RawName}, Interval: time.Minute, Timeout: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	fr.SetMaxPayload(wire.MaxMaxFrameSize)
	d := <-dialed
	if d.err != nil {
		t.Fatal(d.err)
	}
	s := d.s
	defer closeRoundsDialer(s)

	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i % 251)
	}
	if err := s.Notify(context.Background(), "Sink.Take", msg); err != nil {
		t.Fatal(err)
	}

	// got gathers the message body; data counts its bytes read, of
	// total.
	var (
		got         []byte
		data, total int
		pingData    uint64
	)
	read := func() wire.Header {
		t.Helper()
		h, p, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("ReadFrame() after %d bytes of the message: %v", data, err)
		}
		switch h.Type {
		case wire.TypeNotify:
			n, rest, err := wire.ParseMessageLen(p)
			if err != nil {
				t.Fatal(err)
			}
			total = int(n)
			got = append(got, rest...)
			data += len(rest)
		case wire.TypeContinuation:
			got = append(got, p...)
			data += len(p)
		case wire.TypePing:
			if pingData, err = wire.ParsePing(p); err != nil {
				t.Fatal(err)
			}
		}
		return h
	}
	for data < 64<<10 {
		read()
	}
	// The client's writer fills the two sockets' buffers and waits in
	// the middle of a round; then a PING is queued behind it.
	waitFor(t, 10*time.Second, "the client's writer to wait for the socket", func() bool {
		ws := s.mon.writeStart.Load()
		return ws != 0 && s.now()-ws > int64(50*time.Millisecond)
	})
	pinged := make(chan error, 1)
	go func() {
		_, err := s.Ping(context.Background())
		pinged <- err
	}()
	waitFor(t, 10*time.Second, "the PING to be queued", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.ctrl != nil && len(s.ctrl.b) > 0
	})
	before := data
	for read().Type != wire.TypePing {
		if data == total {
			t.Fatalf("the PING did not come before the end of the message")
		}
	}
	ahead := data - before
	t.Logf("%d bytes of the message read after the PING was queued, before the PING", ahead)
	// What the two sockets hold (130 to 200 KiB here, with the receive
	// buffer at 128 KiB and TCP_NOTSENT_LOWAT at 16 KiB) plus one round.
	if limit := 512 << 10; ahead > limit {
		t.Errorf("%d bytes of the message went ahead of the PING, want at most %d", ahead, limit)
	}
	if _, err := conn.Write(wire.AppendPing(nil, wire.TypePong, pingData)); err != nil {
		t.Fatal(err)
	}
	for data < total {
		if h := read(); h.Type == wire.TypePing {
			t.Fatal("a second PING")
		}
	}
	// The body is the call's head (method name, deadline), then msg.
	if len(got) != total || !bytes.HasSuffix(got, msg) {
		t.Fatalf("the message arrived changed (%d bytes of %d)", len(got), total)
	}
	select {
	case err := <-pinged:
		if err != nil {
			t.Errorf("Ping() = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("no answer to Ping() after its PONG")
	}
}

// TestRunLayout lays out large messages run by run, for several frame
// sizes, in payload rounds (budget 0) and in rounds cut to a budget.
// Payload rounds carry whole frames and stop at maxWriteSize bytes of
// payload. A cut round is at most its budget with headers and fills it
// exactly unless it holds the message's end or less than a small frame
// was left. Either way the frames decode to the message.
func TestRunLayout(t *testing.T) {
	for _, budget := range []int{0, runBudget(65483, cutWindow), runBudget(1448, cutWindow), runBudget(9001, cutWindow), 40000} {
		for _, maxFrame := range []int{wire.MinMaxFrameSize, 4000, wire.DefaultMaxFrameSize, 1 << 20} {
			for _, size := range []int{maxFrame + 1, 3*maxFrame - 5, 1 << 20, 1<<20 + 12345} {
				body := make([]byte, size)
				for i := range body {
					body[i] = byte(i % 253)
				}
				m := &outMsg{id: 7, typ: wire.TypeReply, body: body}
				lr := new(largeRound)
				var got []byte
				for run := 0; ; run++ {
					last := lr.next(m, maxFrame, budget, wire.MaxWindow)
					nbytes, payload, hb, off := 0, 0, lr.hdrs[:], lr.start
					for i := range lr.n {
						h, err := wire.ParseHeader(hb[:wire.HeaderSize], uint32(maxFrame))
						if err != nil {
							t.Fatalf("budget %d, frame size %d, %d bytes: run %d frame %d: %v", budget, maxFrame, size, run, i, err)
						}
						hb = hb[wire.HeaderSize:]
						n := int(h.Length)
						nbytes += wire.HeaderSize + n
						if off == 0 {
							if h.Type != wire.TypeReply || len(hb) < wire.MessageLenSize {
								t.Fatalf("first frame %v", h)
							}
							hb = hb[wire.MessageLenSize:]
							n -= wire.MessageLenSize
						} else if h.Type != wire.TypeContinuation {
							t.Fatalf("frame %d of run %d: %v, want CONTINUATION", i, run, h)
						}
						if lr.ends[i]-off != n {
							t.Fatalf("frame %d of run %d: header says %d bytes, run holds %d", i, run, n, lr.ends[i]-off)
						}
						end := lr.ends[i] == size
						if end != (h.Flags&wire.FlagEnd != 0) {
							t.Fatalf("frame %d of run %d ends at %d of %d with flags %v", i, run, lr.ends[i], size, h.Flags)
						}
						if budget == 0 && !end && int(h.Length) != maxFrame {
							t.Fatalf("payload round: frame %d of run %d is %d bytes, not whole (%d)", i, run, h.Length, maxFrame)
						}
						if budget == 0 && payload >= maxWriteSize {
							t.Fatalf("payload round: run %d goes on past %d bytes of payload", run, payload)
						}
						payload += n
						got = append(got, body[off:lr.ends[i]]...)
						off = lr.ends[i]
					}
					if lr.n == 0 || (budget > 0 && nbytes > budget && lr.n > 1) {
						t.Fatalf("budget %d, frame size %d, %d bytes: run %d has %d frames, %d bytes", budget, maxFrame, size, run, lr.n, nbytes)
					}
					if last {
						break
					}
					if budget == 0 && payload < maxWriteSize && lr.n < maxRoundFrames {
						t.Fatalf("payload round: run %d stops at %d bytes of payload", run, payload)
					}
					if short := budget - nbytes; budget > 0 && short > 0 && short >= wire.HeaderSize+wire.MessageLenSize+minRunFrame && maxFrame >= minRunFrame {
						t.Fatalf("budget %d, frame size %d, %d bytes: run %d is %d bytes, %d short of its budget", budget, maxFrame, size, run, nbytes, short)
					}
				}
				if m.off != size || !bytes.Equal(got, body) {
					t.Fatalf("budget %d, frame size %d, %d bytes: the runs carry %d bytes, not the message", budget, maxFrame, size, len(got))
				}
			}
		}
	}
}

// TestRunBudget: rounds are cut to whole segments only for a known
// segment size and a peer's window of at least cutWindow.
func TestRunBudget(t *testing.T) {
	for _, c := range []struct{ mss, wnd, want int }{
		{65483, cutWindow, 65483},
		{65483, 4 << 20, 65483},
		{1448, 1 << 20, 45 * 1448},
		{9001, cutWindow, 7 * 9001},
		{65483, cutWindow - 1, 0},
		{1448, 4096, 0},
		{0, 1 << 20, 0},
		{100, 1 << 20, 0},
		{maxWriteSize + 1, 1 << 20, 0},
	} {
		if got := runBudget(c.mss, c.wnd); got != c.want {
			t.Errorf("runBudget(%d, %d) = %d, want %d", c.mss, c.wnd, got, c.want)
		}
	}
}

// TestRoundBudget: the writer's look at tcp_info cuts rounds on loopback
// TCP once the peer's window is wide, not while a peer with a small
// receive buffer keeps it narrow, and never on a Unix socket. A window
// grows as its receiver keeps up (receive buffer autotuning), which under
// the race detector on a busy machine takes longer: data is pumped
// through, 4 MiB at a time, until the look cuts or 64 MiB have gone by.
func TestRoundBudget(t *testing.T) {
	look := func(t *testing.T, network string, rcvbuf int, wantCut bool) int {
		t.Helper()
		addr := "127.0.0.1:0"
		if network == "unix" {
			addr = t.TempDir() + "/s"
		}
		var lc net.ListenConfig
		if rcvbuf > 0 {
			lc.Control = bufferControl(syscall.SO_RCVBUF, rcvbuf)
		}
		l, err := lc.Listen(context.Background(), network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		const chunk = 4 << 20
		read := make(chan error, 1)
		readerDone := make(chan struct{})
		defer func() { <-readerDone }() // after the client closes, below
		go func() {
			defer close(readerDone)
			conn, err := l.Accept()
			if err != nil {
				read <- err
				return
			}
			defer conn.Close()
			buf := make([]byte, 64<<10)
			for got, told := 0, 0; ; {
				n, err := conn.Read(buf)
				for got += n; got/chunk > told; told++ {
					read <- nil // one more chunk read whole
				}
				if err != nil {
					return // the client closed
				}
			}
		}()
		conn, err := net.Dial(network, l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		s := &Session{conn: conn}
		s.initParking(conn, new(reads))
		data := make([]byte, chunk)
		budget := 0
		for range 16 {
			if _, err := conn.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := <-read; err != nil {
				t.Fatal(err)
			}
			if budget = s.roundBudget(); budget > 0 || !wantCut {
				break
			}
		}
		return budget
	}
	if got := look(t, "tcp", 0, true); got <= 0 || got > maxWriteSize {
		if max := tcpRmemMax(t); max < 2*cutWindow {
			t.Skipf("the kernel lets a receive buffer grow to %d bytes (net.ipv4.tcp_rmem), too little for a window of %d", max, cutWindow)
		}
		t.Errorf("loopback TCP, default buffers, 64 MiB through: roundBudget() = %d, want rounds cut to segments", got)
	}
	if got := look(t, "tcp", 8<<10, false); got != 0 {
		t.Errorf("loopback TCP, peer's receive buffer 8 KiB: roundBudget() = %d, want 0 (payload rounds)", got)
	}
	if got := look(t, "unix", 0, false); got != 0 {
		t.Errorf("Unix socket: roundBudget() = %d, want 0", got)
	}
}

// tcpRmemMax returns the largest receive buffer TCP autotuning may give a
// socket (the third field of net.ipv4.tcp_rmem).
func tcpRmemMax(t *testing.T) int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_rmem")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		t.Fatalf("net.ipv4.tcp_rmem is %q", b)
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// tcpInfoDataSegsOut is the offset of tcpi_data_segs_out (u32) in struct
// tcp_info: the data segments a socket sent.
const tcpInfoDataSegsOut = 156

// readTCPInfo reads conn's struct tcp_info into buf and returns how many
// bytes the kernel filled, 0 on failure. (internal/sock keeps its own
// reader unexported.)
func readTCPInfo(conn net.Conn, buf *[256]byte) int {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return 0
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	got := 0
	raw.Control(func(fd uintptr) {
		n := uint32(len(buf))
		_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		if errno == 0 {
			got = int(n)
		}
	})
	return got
}

// LargeEcho answers its argument.
type LargeEcho struct{}

func (LargeEcho) Bytes(a []byte, r *[]byte) error { *r = append(*r, a...); return nil }

// TestLargeMessagesLeaveAsWholeSegments: over loopback TCP, once the
// server's window has grown, a 1 MiB argument leaves as about one
// 65,483-byte segment per round, not as three packets per round (a full
// segment and two of about 50 bytes), and arrives whole.
func TestLargeMessagesLeaveAsWholeSegments(t *testing.T) {
	ts := startTestServer(t, testConfig(Heartbeat{}), LargeEcho{})
	conn, err := net.Dial("tcp", ts.addr())
	if err != nil {
		t.Fatal(err)
	}
	// Not tuned, as the root's NewClient leaves a connection it is given.
	c, err := startRoundsDialer(conn, testConfig(Heartbeat{}))
	if err != nil {
		t.Fatal(err)
	}
	defer closeRoundsDialer(c)
	arg := make([]byte, 1<<20)
	for i := range arg {
		arg[i] = byte(i % 251)
	}
	callBytes := func() {
		t.Helper()
		var reply []byte
		if err := call(context.Background(), c, "LargeEcho.Bytes", arg, &reply); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(reply, arg) {
			t.Fatalf("the reply (%d bytes) is not the argument", len(reply))
		}
	}
	segsOut := func() int {
		var buf [256]byte
		if readTCPInfo(conn, &buf) < tcpInfoDataSegsOut+4 {
			t.Skip("the kernel does not report tcpi_data_segs_out")
		}
		return int(binary.NativeEndian.Uint32(buf[tcpInfoDataSegsOut:]))
	}
	// The server's window grows as it keeps up (receive buffer
	// autotuning), which under the race detector on a busy machine takes
	// a few calls more: measure four calls at a time, up to ten times.
	// 1 MiB in 65,483-byte segments is 17 of them; payload rounds make
	// about 48.
	const calls = 4
	var perCall float64
	for range 10 {
		before := segsOut()
		for range calls {
			callBytes()
		}
		if perCall = float64(segsOut()-before) / calls; perCall <= 24 {
			break
		}
	}
	if perCall > 24 {
		if max := tcpRmemMax(t); max < 2*cutWindow {
			t.Skipf("the kernel lets a receive buffer grow to %d bytes (net.ipv4.tcp_rmem), too little for a window of %d", max, cutWindow)
		}
		t.Errorf("a 1 MiB argument left as %.1f data segments after 40 calls; want at most 24 (17 whole ones and a few partial)", perCall)
	}
	t.Logf("%.1f data segments per 1 MiB argument", perCall)
}
