package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// The handshake reads exactly one frame, the peer's HELLO (or a GOAWAY
// refusing it), before the session's reader exists. A connection whose
// handshake is pending therefore holds no read buffer of the session's
// size (readBufferSize): its header is read into a few bytes, and its
// payload, at most wire.MaxHelloSize, into a buffer of that size taken
// from helloPool once the header has announced it and given back when the
// handshake ends. Reading the frame exactly, not ahead, leaves whatever
// the peer sent after it in the socket for the session's reader.

// helloPool holds the payload buffers of HELLO frames being read.
var helloPool = sync.Pool{New: func() any { return new([wire.MaxHelloSize]byte) }}

// ErrTLSPeer is the error of a handshake that read a TLS record where a
// Pulse frame was expected: the two sides disagree about TLS.
var ErrTLSPeer = errors.New("pulse: TLS on one side only")

// looksLikeTLS reports whether the first bytes read from a peer are the
// header of a TLS record (handshake 0x16 or alert 0x15, version 3.x), not
// of a Pulse frame (whose first byte is the protocol version).
func looksLikeTLS(b []byte) bool {
	return len(b) >= 2 && (b[0] == 0x16 || b[0] == 0x15) && b[1] == 0x03
}

// LooksLikePulse reports whether b, the first bytes a peer sent, begin a
// Pulse frame header: the protocol version, then a frame type.
func LooksLikePulse(b []byte) bool {
	return len(b) >= 2 && b[0] == wire.Version && wire.FrameType(b[1]).Valid()
}

// readHello reads one frame of at most wire.MaxHelloSize bytes from conn.
// Its payload is valid until release is called.
func readHello(conn net.Conn) (hdr wire.Header, payload []byte, release func(), err error) {
	// The header is read as io.ReadFull would, but looked at as soon as
	// two bytes are in: a TLS record (a 7-byte alert, say) may be shorter
	// than a header.
	var hb [wire.HeaderSize]byte
	for n := 0; n < len(hb); {
		m, err := conn.Read(hb[n:])
		n += m
		if n >= 2 && looksLikeTLS(hb[:n]) {
			return hdr, nil, nil, ErrTLSPeer
		}
		if err != nil && n < len(hb) {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return hdr, nil, nil, err
		}
	}
	if hdr, err = wire.ParseHeader(hb[:], wire.MaxHelloSize); err != nil {
		return hdr, nil, nil, err
	}
	buf := helloPool.Get().(*[wire.MaxHelloSize]byte)
	release = func() { helloPool.Put(buf) }
	payload = buf[:hdr.Length]
	if _, err := io.ReadFull(conn, payload); err != nil {
		release()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return hdr, nil, nil, err
	}
	return hdr, payload, release, nil
}

// helloReadErr is the acceptor's error for a first frame it could not
// read. A TLS/plaintext mismatch is named, and the peer is told in its own
// language where that is possible: a TLS client on a plaintext port gets a
// Pulse GOAWAY, which its TLS stack reports as a record that is not TLS
// (the dialer recognizes it, see dialTLS in the root); a plaintext Pulse
// client on a TLS port (conn is a *tls.Conn) gets a plaintext GOAWAY
// asking for TLS, as net/http answers HTTP on an HTTPS port.
func helloReadErr(conn net.Conn, cfg *Config, err error) error {
	var ne net.Error
	var rhe tls.RecordHeaderError
	switch {
	case errors.Is(err, ErrTLSPeer):
		msg := "TLS client on a plaintext Pulse port: this port speaks plaintext Pulse; dial without WithTLS"
		answerMismatch(conn, msg)
		return &ConnError{Reason: ReasonHandshake, Code: wire.GoAwayHandshake, Err: fmt.Errorf("%w: %s", err, msg)}
	case errors.As(err, &rhe) && rhe.Conn != nil && LooksLikePulse(rhe.RecordHeader[:]):
		msg := "plaintext Pulse client on a TLS port: this port speaks TLS; dial with WithTLS"
		answerMismatch(rhe.Conn, msg)
		return &ConnError{Reason: ReasonHandshake, Code: wire.GoAwayHandshake, Err: fmt.Errorf("%w: %s", ErrTLSPeer, msg)}
	case errors.As(err, &ne) && ne.Timeout():
		return handshakeErr("no HELLO within %v", cfg.HandshakeTimeout)
	}
	return handshakeErr("reading HELLO: %w", err)
}

// lingerAfterMismatch bounds how long an acceptor that refused a peer
// (of the wrong kind, or over a limit) waits for it to close, and
// mismatchDiscard how much it reads from it meanwhile.
const (
	lingerAfterMismatch = time.Second
	mismatchDiscard     = 64 << 10
)

// answerMismatch (or any refusal) writes a GOAWAY with msg on raw (the TCP connection, below
// TLS if any), then half-closes and discards what the peer still sends,
// within a bound, so that closing does not reset the connection before the
// peer has read the answer.
func answerMismatch(raw net.Conn, msg string) {
	if lc, ok := raw.(liveConn); ok {
		raw = lc.Conn
	}
	raw.SetDeadline(time.Now().Add(lingerAfterMismatch))
	if _, err := raw.Write(wire.AppendGoAway(nil, wire.GoAway{Code: wire.GoAwayHandshake, Message: msg})); err != nil {
		return
	}
	if cw, ok := raw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	io.Copy(io.Discard, io.LimitReader(raw, mismatchDiscard))
}

// Refuse runs the acceptor's side of a handshake that is refused whatever
// the dialer offers, such as by a server over its connection limits: it
// reads the dialer's HELLO within cfg.HandshakeTimeout, answers GOAWAY code
// 8 (handshake refused) with msg, which the dialer's error shows, and
// closes conn. It returns the *ConnError saying so.
func Refuse(conn net.Conn, cfg *Config, msg string) error {
	defer conn.Close()
	stop := deadlineFor(context.Background(), conn, cfg.HandshakeTimeout)
	defer stop()
	_, _, release, err := readHello(conn)
	if err != nil {
		return helloReadErr(conn, cfg, err)
	}
	release()
	answerMismatch(conn, msg)
	return &ConnError{Reason: ReasonHandshake, Code: wire.GoAwayHandshake, Err: errors.New(msg)}
}
