package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// rawSystem is the reference: the least an RPC over one TCP connection
// can do. A frame is a 4-byte big-endian payload length, an 8-byte
// request id and the payload; the server sends the same frame back.
//
// Client: callers share one connection. A caller appends its frame to a
// queue and, when no write is in progress, becomes the writer and writes
// the whole queue (its own frame and whatever others queued meanwhile) in
// one system call, until the queue is empty. One reader goroutine
// matches replies to callers through a map of pending ids and reads each
// payload straight into the caller's buffer.
//
// Server: one goroutine per connection reads frames through a large
// bufio.Reader, echoes each into a bufio.Writer, and flushes only when no
// further complete request is buffered, so that replies to pipelined
// requests leave in one write.
type rawSystem struct{}

const (
	rawHeader   = 12
	rawMaxFrame = 64 << 20
	rawBufSize  = 64 << 10
)

func (rawSystem) Serve(l net.Listener, _ serveOptions) (func(), error) {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				rawServeConn(c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	return func() {
		l.Close()
		<-done
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}, nil
}

func rawServeConn(c net.Conn) {
	br := bufio.NewReaderSize(c, rawBufSize)
	bw := bufio.NewWriterSize(c, rawBufSize)
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

func (rawSystem) Dial(ctx context.Context, addr string, o dialOptions) (echoConn, error) {
	c, err := tcpDialer(o)(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	rc := &rawConn{conn: c, pending: map[uint64]*rawCall{}, readerDone: make(chan struct{})}
	go rc.readLoop()
	return rc, nil
}

type rawConn struct {
	conn       net.Conn
	readerDone chan struct{}

	mu      sync.Mutex
	pending map[uint64]*rawCall
	nextID  uint64
	queue   []byte // frames waiting for the writer
	spare   []byte // the other buffer, owned by the writer
	writing bool
	err     error
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
	br := bufio.NewReaderSize(c.conn, rawBufSize)
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
