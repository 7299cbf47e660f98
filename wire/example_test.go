package wire_test

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// exchange encodes a complete small Pulse exchange with the wire package:
// the dialer's HELLO, the acceptor's HELLO, one CALL and its REPLY. Every
// frame is read back with a wire.Reader and printed as a hex dump. The
// output is the example in PROTOCOL.md.
func exchange() string {
	type frame struct {
		dir   string
		bytes []byte
	}
	var frames []frame

	// 1. The dialer offers two codecs, raw preferred, and proposes
	// settings: the frame and message sizes it accepts, a 15 s heartbeat
	// and a 45 s silence deadline, and grants the acceptor an initial
	// flow-control window of 8 MiB.
	b, err := wire.AppendHello(nil, wire.Hello{
		Role:           wire.RoleDialer,
		MaxFrameSize:   16384,
		MaxMessageSize: 4 << 20,
		Interval:       15 * time.Second,
		Timeout:        45 * time.Second,
		InitialWindow:  8 << 20,
		Codecs:         []string{"raw", "json"},
	})
	if err != nil {
		panic(err)
	}
	frames = append(frames, frame{"dialer -> acceptor", b})

	// 2. The acceptor chooses json and grants its settings, and the
	// dialer an initial window of 8 MiB.
	b, err = wire.AppendHello(nil, wire.Hello{
		Role:               wire.RoleAcceptor,
		MaxFrameSize:       16384,
		MaxMessageSize:     4 << 20,
		Interval:           15 * time.Second,
		Timeout:            45 * time.Second,
		MaxConcurrentCalls: 100,
		MinPingInterval:    5 * time.Second,
		InitialWindow:      8 << 20,
		Codecs:             []string{"json"},
	})
	if err != nil {
		panic(err)
	}
	frames = append(frames, frame{"acceptor -> dialer", b})

	// 3. The dialer calls Arith.Add with a 2 s deadline: call id 1, the
	// first odd id. The message fits one frame, so it carries FlagEnd.
	// Its 26 payload bytes take 26 of the dialer's 8 MiB of credit.
	b = wire.AppendHeader(nil, wire.TypeCall, wire.FlagEnd, 1, 0)
	b = wire.AppendCallHead(b, "Arith.Add", 2*time.Second)
	b = append(b, `{"A":2,"B":3}`...)
	wire.PutLength(b, len(b)-wire.HeaderSize)
	frames = append(frames, frame{"dialer -> acceptor", b})

	// 4. The acceptor answers call 1: status OK, reply 5.
	b = wire.AppendHeader(nil, wire.TypeReply, wire.FlagEnd, 1, 0)
	b = wire.AppendReplyHead(b, wire.StatusOK)
	b = append(b, `5`...)
	wire.PutLength(b, len(b)-wire.HeaderSize)
	frames = append(frames, frame{"acceptor -> dialer", b})

	var out strings.Builder
	for _, f := range frames {
		r := wire.NewReader(strings.NewReader(string(f.bytes)), 64)
		h, _, err := r.ReadFrame()
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(&out, "%s: %v (%d bytes)\n", f.dir, h, len(f.bytes))
		out.WriteString(hex.Dump(f.bytes))
		out.WriteString("\n")
	}
	return out.String()
}

func Example_exchange() {
	fmt.Print(exchange())
	// Output:
	// dialer -> acceptor: HELLO flags=END id=0 len=58 (70 bytes)
	// 00000000  02 01 01 00 00 00 00 00  00 00 00 3a 50 4c 53 45  |...........:PLSE|
	// 00000010  00 07 00 01 00 00 40 00  00 02 00 40 00 00 00 03  |......@....@....|
	// 00000020  00 00 3a 98 00 04 00 00  af c8 00 05 00 00 00 00  |..:.............|
	// 00000030  00 06 00 00 00 00 00 07  00 80 00 00 02 03 72 61  |..............ra|
	// 00000040  77 04 6a 73 6f 6e                                 |w.json|
	//
	// acceptor -> dialer: HELLO flags=END id=0 len=54 (66 bytes)
	// 00000000  02 01 01 00 00 00 00 00  00 00 00 36 50 4c 53 45  |...........6PLSE|
	// 00000010  01 07 00 01 00 00 40 00  00 02 00 40 00 00 00 03  |......@....@....|
	// 00000020  00 00 3a 98 00 04 00 00  af c8 00 05 00 00 00 64  |..:............d|
	// 00000030  00 06 00 00 13 88 00 07  00 80 00 00 01 04 6a 73  |..............js|
	// 00000040  6f 6e                                             |on|
	//
	// dialer -> acceptor: CALL flags=END id=1 len=26 (38 bytes)
	// 00000000  02 02 01 00 00 00 00 01  00 00 00 1a 09 41 72 69  |.............Ari|
	// 00000010  74 68 2e 41 64 64 80 89  7a 7b 22 41 22 3a 32 2c  |th.Add..z{"A":2,|
	// 00000020  22 42 22 3a 33 7d                                 |"B":3}|
	//
	// acceptor -> dialer: REPLY flags=END id=1 len=2 (14 bytes)
	// 00000000  02 03 01 00 00 00 00 01  00 00 00 02 00 35        |.............5|
}
