package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// rawSystem is the reference: the least an RPC over one TCP connection
// can do. A frame is a 4-byte big-endian payload length, an 8-byte
// request id and the payload; the server sends the same frame back.
//
// Client: callers share one connection. A caller appends its frame to a
// queue under a mutex and, when no write is in progress, becomes the
// writer: it yields once (runtime.Gosched) so that callers that are
// runnable can append their frames too, then writes the whole queue in one
// system call, until the queue is empty. One reader goroutine matches
// replies to callers through a map of pending ids and reads each payload
// straight into the caller's buffer.
//
// Server: one goroutine per connection reads frames through a 32 KiB
// bufio.Reader, echoes each inline into a 32 KiB bufio.Writer, and flushes
// only when no further complete request is buffered, so that one read of
// K pipelined requests makes one write of K replies.
//
// This is the reference for what the machine allows an RPC over one TCP
// connection: the obvious design with no spinning, no parking machinery
// and no heartbeats in the cells.
//
// Idle test (Idle set on both ends): the reference for what heartbeats
// cost at all. Both ends use small buffers (rawIdleBufSize) instead of
// 64 KiB ones. Every client connection sends a PING, a frame with no
// payload and id 0 (ids of calls start at 1), every heartbeat interval
// (idleHeartbeat, as Pulse in the idle test), the first one at a uniformly
// random point of the first interval so that connections dialed together
// do not all ping together. The server echoes it at once like any frame:
// that is the PONG. The client's reader counts the PONGs, and a client
// connection that has read nothing for the timeout (idleHeartbeatTimeout)
// when it is due to ping fails, as a dead peer would be detected. Pings
// run on one time.AfterFunc timer per connection, no goroutine (the way
// Pulse's connection monitor runs). The server does no dead-peer
// detection and arms no timer: one PING and one PONG per connection per
// interval is all the idle connections cost, the floor.
//
// With TLS (-tls) both ends run the same code over crypto/tls's tls.Conn.
type rawSystem struct {
	// heartbeat and heartbeatTimeout override idleHeartbeat and
	// idleHeartbeatTimeout (tests); zero means those.
	heartbeat, heartbeatTimeout time.Duration
}

const (
	rawHeader      = 12
	rawMaxFrame    = 64 << 20
	rawBufSize     = 32 << 10
	rawIdleBufSize = 512
	rawPingID      = 0
)

var errRawHeartbeatTimeout = errors.New("raw: no reply to heartbeats within the timeout")

func (rawSystem) Serve(l net.Listener, o serveOptions) (func(), error) {
	bufSize := rawBufSize
	if o.Idle {
		bufSize = rawIdleBufSize
	}
	if o.TLS != nil {
		l = tls.NewListener(l, o.TLS)
	}
	return serveConns(l, func(c net.Conn) {
		rawServeConn(c, bufSize)
		c.Close()
	}), nil
}

// rawServeConn echoes the frames of c, PINGs included, through buffers of
// bufSize bytes.
func rawServeConn(c net.Conn, bufSize int) {
	br := bufio.NewReaderSize(c, bufSize)
	bw := bufio.NewWriterSize(c, bufSize)
	var hdr [rawHeader]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[:4]))
		if n > rawMaxFrame {
			return
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return
		}
		bw.Write(hdr[:])
		bw.Write(buf)
		if !rawFrameBuffered(br) {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
}

// rawFrameBuffered reports whether a whole frame is waiting in br.
func rawFrameBuffered(br *bufio.Reader) bool {
	if br.Buffered() < rawHeader {
		return false
	}
	h, err := br.Peek(rawHeader)
	if err != nil {
		return false
	}
	return br.Buffered() >= rawHeader+int(binary.BigEndian.Uint32(h[:4]))
}

func (s rawSystem) Dial(ctx context.Context, addr string, o dialOptions) (echoConn, error) {
	c, err := dialTLS(ctx, tcpDialer(o), addr, o.TLS)
	if err != nil {
		return nil, err
	}
	rc := &rawConn{conn: c, pending: map[uint64]*rawCall{}, readerDone: make(chan struct{}), bufSize: rawBufSize}
	if o.Idle {
		rc.bufSize = rawIdleBufSize
		rc.interval, rc.timeout = idleHeartbeat, idleHeartbeatTimeout
		if s.heartbeat > 0 {
			rc.interval = s.heartbeat
		}
		if s.heartbeatTimeout > 0 {
			rc.timeout = s.heartbeatTimeout
		}
		rc.epoch = time.Now()
	}
	go rc.readLoop()
	if rc.interval > 0 {
		rc.mu.Lock() // the timer may fire before AfterFunc returns
		rc.hbTimer = time.AfterFunc(rand.N(rc.interval), rc.heartbeat)
		rc.mu.Unlock()
	}
	return rc, nil
}

type rawConn struct {
	conn       net.Conn
	readerDone chan struct{}
	bufSize    int // of the reader

	// Heartbeats (idle test only; interval 0 otherwise).
	interval, timeout time.Duration
	epoch             time.Time     // the dial
	lastRead          atomic.Int64  // ns since epoch, when the reader last read a frame
	pongs             atomic.Uint64 // PONGs read

	mu      sync.Mutex
	pending map[uint64]*rawCall
	nextID  uint64
	queue   []byte // frames waiting for the writer
	spare   []byte // the other buffer, owned by the writer
	writing bool
	err     error
	hbTimer *time.Timer
}

// heartbeatReplies returns how many PONGs the connection has read.
func (c *rawConn) heartbeatReplies() uint64 { return c.pongs.Load() }

// heartbeat runs on c.hbTimer: it fails the connection if nothing was read
// for the timeout, and otherwise queues a PING, re-arms the timer and
// writes the PING unless a writer is at work (which then writes it).
func (c *rawConn) heartbeat() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if time.Since(c.epoch)-time.Duration(c.lastRead.Load()) > c.timeout {
		c.mu.Unlock()
		c.fail(errRawHeartbeatTimeout)
		return
	}
	var ping [rawHeader]byte // length 0, id rawPingID
	c.queue = append(c.queue, ping[:]...)
	c.hbTimer.Reset(c.interval)
	if c.writing {
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.mu.Unlock()
	c.writeQueued()
}

type rawCall struct {
	resp *[]byte
	err  error
	done chan struct{}
}

var rawCallPool = sync.Pool{New: func() any { return &rawCall{done: make(chan struct{}, 1)} }}

var errRawClosed = errors.New("raw: connection closed")

func (c *rawConn) Echo(req, resp *[]byte) error {
	if len(*req) > rawMaxFrame {
		return fmt.Errorf("raw: payload of %d bytes over the %d limit", len(*req), rawMaxFrame)
	}
	call := rawCallPool.Get().(*rawCall)
	call.resp, call.err = resp, nil
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		rawCallPool.Put(call)
		return err
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = call
	var hdr [rawHeader]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(*req)))
	binary.BigEndian.PutUint64(hdr[4:], id)
	c.queue = append(append(c.queue, hdr[:]...), *req...)
	if c.writing {
		c.mu.Unlock()
	} else {
		c.writing = true
		c.mu.Unlock()
		// Let the callers that are ready to run append their frames
		// first, so that one write carries them all.
		runtime.Gosched()
		c.writeQueued()
	}
	<-call.done
	err := call.err
	call.resp, call.err = nil, nil
	rawCallPool.Put(call)
	return err
}

// writeQueued writes the queue until it is empty. One goroutine at a time
// runs it (c.writing).
func (c *rawConn) writeQueued() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.err != nil {
			c.writing = false
			c.mu.Unlock()
			return
		}
		buf := c.queue
		c.queue = c.spare[:0]
		c.mu.Unlock()
		_, err := c.conn.Write(buf)
		if cap(buf) > 4<<20 {
			buf = nil // do not keep a huge buffer
		}
		c.spare = buf[:0]
		if err != nil {
			c.fail(err)
		}
	}
}

func (c *rawConn) readLoop() {
	defer close(c.readerDone)
	br := bufio.NewReaderSize(c.conn, c.bufSize)
	var hdr [rawHeader]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			c.fail(err)
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[:4]))
		id := binary.BigEndian.Uint64(hdr[4:])
		if n > rawMaxFrame {
			c.fail(fmt.Errorf("raw: reply of %d bytes over the %d limit", n, rawMaxFrame))
			return
		}
		if c.interval > 0 {
			c.lastRead.Store(int64(time.Since(c.epoch)))
			if id == rawPingID {
				c.pongs.Add(1)
			}
		}
		c.mu.Lock()
		call := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if call == nil {
			if _, err := br.Discard(n); err != nil {
				c.fail(err)
				return
			}
			continue
		}
		b := *call.resp
		if cap(b) < n {
			b = make([]byte, n)
		}
		b = b[:n]
		if _, err := io.ReadFull(br, b); err != nil {
			call.err = err
			call.done <- struct{}{}
			c.fail(err)
			return
		}
		*call.resp = b
		call.done <- struct{}{}
	}
}

// fail closes the connection and fails every pending call with err.
func (c *rawConn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		err = errRawClosed
	}
	c.err = err
	pending := c.pending
	c.pending = nil
	if c.hbTimer != nil {
		c.hbTimer.Stop() // not re-armed: heartbeat sees c.err
	}
	c.mu.Unlock()
	c.conn.Close()
	for _, call := range pending {
		call.err = err
		call.done <- struct{}{}
	}
}

func (c *rawConn) Close() error {
	c.fail(errRawClosed)
	<-c.readerDone
	return nil
}
