package wire

import (
	"errors"
	"io"
	"sync"
)

// smallBufSize is the inline buffer a Reader in idle-release mode reads
// into while it holds no pooled buffer: a heartbeat or a small call fits,
// so an idle connection's next frame costs no buffer from the pool.
const smallBufSize = 512

// StreamBufSize is the buffer a pooling Reader reads into while a message
// of at least this size arrives: one read system call then takes up to
// this much of it, where the usual buffer would take a frame or two, and
// frames are seldom moved to the buffer's front. Smaller messages spanning
// frames keep the usual buffer, so that many connections receiving
// messages of a few frames do not hold a StreamBufSize buffer each.
const StreamBufSize = 256 << 10

// streamPool holds the buffers of Readers that are receiving large
// messages.
var streamPool = sync.Pool{New: func() any { b := make([]byte, StreamBufSize); return &b }}

// Reader reads frames from a byte stream. It buffers reads so that a burst
// of small frames costs one read system call, and it checks every header's
// length against the maximum payload before allocating or reading the body.
//
// A Reader is not safe for concurrent use; one goroutine reads a connection.
type Reader struct {
	rd   io.Reader
	buf  []byte
	r, w int // buf[r:w] is buffered and unread
	size int // buffer size to allocate when buf is nil
	max  uint32

	// With pool set (SetBufferPool), the Reader holds a buffer from pool
	// only while it has unread bytes; otherwise it reads into small, a
	// small array from smallPool that it also holds only while reading.
	pool  *sync.Pool
	bufp  *[]byte // the pool's pointer to buf, to give back without allocating
	small *[smallBufSize]byte

	// more is set while the last frame returned was a CALL, REPLY,
	// NOTIFY or CONTINUATION frame of a message that continues: more
	// frames of it are on their way, so a pooling Reader keeps its buffer
	// when it runs empty. big is set while the message that last began
	// (id moreID) announced StreamBufSize bytes or more: its frames are
	// read into a StreamBufSize buffer, no larger than the message's own.
	more   bool
	big    bool
	moreID uint32

	// err is a read error that ReadOnce met, returned by the next read
	// that needs more bytes than are buffered.
	err error
}

// smallPool holds the small arrays that Readers read into between bursts.
var smallPool = sync.Pool{New: func() any { return new([smallBufSize]byte) }}

// NewReader returns a Reader with a buffer of bufSize bytes (at least
// 2*HeaderSize) and a payload limit of MaxHelloSize, the limit that applies
// until the handshake has fixed the frame size with SetMaxPayload.
func NewReader(rd io.Reader, bufSize int) *Reader {
	if bufSize < 2*HeaderSize {
		bufSize = 2 * HeaderSize
	}
	return &Reader{rd: rd, size: bufSize, max: MaxHelloSize}
}

// SetMaxPayload sets the largest payload ReadFrame accepts.
func (fr *Reader) SetMaxPayload(n uint32) { fr.max = n }

// SetBufferPool makes the Reader take its buffers from pool, which must
// hold *[]byte values of the Reader's buffer size (or make them), and give
// them back whenever it has no unread bytes. Between bursts it reads into
// a small inline array, so that many idle connections share a few buffers
// instead of holding one each. While a message of StreamBufSize bytes or
// more is arriving, it reads into a StreamBufSize buffer from a pool of
// its own, which it gives back once the message's last frame has been
// read and nothing is left unread.
func (fr *Reader) SetBufferPool(pool *sync.Pool) { fr.pool = pool }

// Buffered returns the number of bytes read from the stream but not yet
// returned as frames.
func (fr *Reader) Buffered() int { return fr.w - fr.r }

// Release drops the buffer if it holds no unread bytes and no message is
// half read, so an idle connection keeps no buffer. The next ReadFrame
// gets a new one.
func (fr *Reader) Release() {
	if fr.r == fr.w && !fr.more {
		fr.dropBuf()
		fr.r, fr.w = 0, 0
	}
}

// dropBuf lets go of buf, giving a pooled buffer back.
func (fr *Reader) dropBuf() {
	if fr.isSmall() {
		fr.dropSmall()
		fr.buf = nil
		return
	}
	if fr.pool != nil {
		pool := fr.pool
		switch len(fr.buf) {
		case fr.size:
		case StreamBufSize:
			pool = &streamPool
		default:
			pool = nil // a buffer grown for one large frame
		}
		if pool != nil {
			bp := fr.bufp
			if bp == nil {
				bp = new([]byte)
			}
			*bp = fr.buf
			pool.Put(bp)
		}
	}
	fr.buf, fr.bufp = nil, nil
}

func (fr *Reader) isSmall() bool {
	return fr.small != nil && len(fr.buf) > 0 && &fr.buf[0] == &fr.small[0]
}

// dropSmall gives the small array back.
func (fr *Reader) dropSmall() {
	smallPool.Put(fr.small)
	fr.small = nil
}

// newBuf returns a buffer of at least n bytes: the inline array when the
// Reader pools and n fits it, else one from the pool or a new one.
// The second result is the pool's pointer to a pooled buffer (nil for a
// new one), for dropBuf to give it back without allocating.
func (fr *Reader) newBuf(n int) ([]byte, *[]byte) {
	if n > fr.size {
		return make([]byte, n), nil
	}
	if fr.pool != nil {
		if p, ok := fr.pool.Get().(*[]byte); ok && len(*p) == fr.size {
			return *p, p
		}
	}
	return make([]byte, fr.size), nil
}

// rewind starts the buffer over when nothing in it is unread. A buffer of
// the usual size is kept: bytes are flowing, and the next burst should
// take one read, not a small one first (the owner lets it go with Release
// when the connection goes quiet). A larger one, taken for a large
// message, is let go once that message is read.
func (fr *Reader) rewind() {
	if fr.r == fr.w && fr.buf != nil {
		fr.r, fr.w = 0, 0
		if fr.pool != nil && !fr.more && !fr.isSmall() && len(fr.buf) != fr.size {
			fr.dropBuf()
		}
	}
}

// takeBuf gives the Reader a buffer for a read of at least n bytes when it
// has none: the small inline array when it pools and n fits it.
func (fr *Reader) takeBuf(n int) {
	if fr.buf != nil {
		return
	}
	if fr.pool != nil && n <= smallBufSize {
		fr.small = smallPool.Get().(*[smallBufSize]byte)
		fr.buf = fr.small[:]
	} else {
		fr.buf, fr.bufp = fr.newBuf(n)
	}
}

// fill makes at least n bytes available in buf[r:w], growing buf when n
// exceeds its capacity. It returns io.EOF only when no byte at all was
// buffered and the stream ended; a stream that ends within the n bytes
// gives io.ErrUnexpectedEOF.
func (fr *Reader) fill(n int) error {
	if fr.w-fr.r >= n {
		return nil
	}
	if fr.more && fr.big && fr.pool != nil && len(fr.buf) < StreamBufSize && n <= StreamBufSize {
		// A message is arriving in frames: read it in large pieces.
		bp := streamPool.Get().(*[]byte)
		fr.w = copy(*bp, fr.buf[fr.r:fr.w])
		fr.r = 0
		fr.dropBuf()
		fr.buf, fr.bufp = *bp, bp
	}
	fr.takeBuf(n)
	if len(fr.buf)-fr.r < n {
		// Not enough room after r: move the unread bytes to the front,
		// into a larger buffer when even the whole one is too small.
		if len(fr.buf) < n {
			nb, nbp := fr.newBuf(n)
			fr.w = copy(nb, fr.buf[fr.r:fr.w])
			fr.dropBuf()
			fr.buf, fr.bufp = nb, nbp
		} else {
			fr.w = copy(fr.buf, fr.buf[fr.r:fr.w])
		}
		fr.r = 0
	}
	for fr.w-fr.r < n {
		if fr.isSmall() && fr.w > 0 {
			// Bytes are flowing: read the rest into a full-size buffer,
			// so that a burst costs few system calls.
			nb, nbp := fr.newBuf(n)
			fr.w = copy(nb, fr.buf[fr.r:fr.w])
			fr.r = 0
			fr.dropSmall()
			fr.buf, fr.bufp = nb, nbp
		}
		var (
			m   int
			err error
		)
		if fr.err != nil {
			err, fr.err = fr.err, nil
		} else {
			m, err = fr.rd.Read(fr.buf[fr.w:])
		}
		fr.w += m
		if err != nil {
			if fr.w-fr.r >= n {
				return nil
			}
			if errors.Is(err, io.EOF) && fr.w > fr.r {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// ReadFrame reads the next frame. The payload aliases the Reader's buffer
// and is valid only until the next call to ReadFrame or Release. At a clean
// end of stream between frames it returns io.EOF; a stream that ends inside
// a frame gives io.ErrUnexpectedEOF.
func (fr *Reader) ReadFrame() (Header, []byte, error) {
	fr.rewind()
	if err := fr.fill(HeaderSize); err != nil {
		return Header{}, nil, err
	}
	h, err := ParseHeader(fr.buf[fr.r:fr.r+HeaderSize], fr.max)
	if err != nil {
		return h, nil, err
	}
	total := HeaderSize + int(h.Length)
	if err := fr.fill(total); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, err
	}
	p := fr.buf[fr.r+HeaderSize : fr.r+total : fr.r+total]
	fr.r += total
	if fr.r == fr.w {
		fr.r, fr.w = 0, 0
	}
	fr.more = false
	switch h.Type {
	case TypeCall, TypeReply, TypeNotify:
		fr.more = h.Flags&(FlagEnd|FlagAbort) == 0
		fr.moreID, fr.big = h.ID, false
		if total, _, err := ParseMessageLen(p); fr.more && err == nil {
			fr.big = total >= StreamBufSize
		}
	case TypeContinuation:
		fr.more = h.Flags&(FlagEnd|FlagAbort) == 0
		fr.big = fr.big && h.ID == fr.moreID
	}
	// A frame larger than the usual buffer grew it; go back to the usual
	// size once that frame has been consumed, so one large frame does not
	// pin a large buffer for the life of the connection. The payload
	// returned still aliases it, which is fine: nothing reuses it.
	if len(fr.buf) > fr.size && fr.r == 0 && fr.w == 0 && !fr.more {
		if len(fr.buf) == StreamBufSize && fr.pool != nil {
			// Pooled: the caller may still be reading p, so it goes back
			// at the next ReadFrame or Release instead.
			return h, p, nil
		}
		fr.buf, fr.bufp = nil, nil
	}
	return h, p, nil
}

// ReadOnce reads once from rd, which stands for the Reader's stream (the
// same bytes, read another way: without waiting, say), into the buffer,
// and returns what the read returned. The bytes are returned as frames by
// BufferedFrame and ReadFrame; an error is returned again by the ReadFrame
// that needs more bytes than are buffered, after the frames read before
// it.
func (fr *Reader) ReadOnce(rd io.Reader) (int, error) {
	if fr.err != nil {
		return 0, fr.err
	}
	fr.rewind()
	fr.takeBuf(1)
	if fr.w == len(fr.buf) && fr.r > 0 {
		fr.w = copy(fr.buf, fr.buf[fr.r:fr.w])
		fr.r = 0
	}
	if fr.w == len(fr.buf) {
		return 0, nil // full: ReadFrame reads on
	}
	n, err := rd.Read(fr.buf[fr.w:])
	fr.w += n
	fr.err = err
	return n, err
}

// BufferedFrame returns the header of the next frame when the whole frame
// is buffered, so that ReadFrame returns it without reading.
func (fr *Reader) BufferedFrame() (Header, bool) {
	if fr.w-fr.r < HeaderSize {
		return Header{}, false
	}
	h, err := ParseHeader(fr.buf[fr.r:fr.r+HeaderSize], fr.max)
	if err != nil || fr.w-fr.r < HeaderSize+int(h.Length) {
		return Header{}, false
	}
	return h, true
}
