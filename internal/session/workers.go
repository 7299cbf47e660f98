package session

import (
	"sync"
	"sync/atomic"
	"time"
)

// workers runs the handlers of every session in the process whose Config
// names no pool. A handler needs a few KiB of stack (reflect.Value.Call
// alone takes more than the 2 KiB a new goroutine starts with), and a
// goroutine per call grows its stack, copying it, on every call; a worker
// goroutine keeps its stack from one call to the next.
// Workers are started on demand, run one call at a time, and exit after
// workerIdleTimeout without work, or at once when no session is left, so
// that an idle process (and an idle connection) holds none.
var workers WorkerPool

const (
	// workerIdleTimeout is how long an idle worker waits for a call.
	workerIdleTimeout = time.Second
	// maxIdleWorkers bounds the workers kept waiting.
	maxIdleWorkers = 1024
)

// handlerTask is a call to run on a worker: one call (n), or the
// notification queue of s.
type handlerTask struct {
	s             *Session
	n             pendingNotify
	notifications bool
	read          bool // resume the parked reader of s (park.go)
}

func (t *handlerTask) run() {
	if t.read {
		// On a worker, whose stack has grown already: a new goroutine
		// would grow its stack for every heartbeat of an idle connection.
		t.s.readFrames()
		return
	}
	if t.notifications {
		t.s.runNotifications()
		return
	}
	n := &t.n
	t.s.serve(n.ctx, n.cancel, false, n.id, n.held, n.svc, n.mt, n.argv, inline)
}

type worker struct {
	task   chan handlerTask // a task, or the zero task to exit
	idleAt int64            // procNanotime when it became idle
}

type WorkerPool struct {
	// live counts the sessions of this pool whose reader runs; when it
	// drops to zero the idle workers exit at once.
	live  atomic.Int64
	mu    sync.Mutex
	idle  []*worker // the most recently idle last
	timer *time.Timer
	armed bool
}

// run runs t on an idle worker, or on a new one.
func (p *WorkerPool) run(t handlerTask) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.task <- t
		return
	}
	p.mu.Unlock()
	go p.work(&worker{task: make(chan handlerTask, 1)}, t)
}

func (p *WorkerPool) work(w *worker, t handlerTask) {
	for {
		t.run()
		t = handlerTask{} // let go of the call's values while idle
		if !p.park(w) {
			return
		}
		if t = <-w.task; t.s == nil {
			return
		}
	}
}

// park puts w on the idle list, unless enough are idle or no session is
// left, and reports whether it did.
func (p *WorkerPool) park(w *worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= maxIdleWorkers || p.live.Load() == 0 {
		return false
	}
	w.idleAt = procNanotime()
	p.idle = append(p.idle, w)
	if !p.armed {
		p.armed = true
		if p.timer == nil {
			p.timer = time.AfterFunc(workerIdleTimeout, p.reap)
		} else {
			p.timer.Reset(workerIdleTimeout)
		}
	}
	return true
}

// reap ends the workers idle for workerIdleTimeout, and re-arms the timer
// while others remain idle.
func (p *WorkerPool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := procNanotime()
	n := 0
	for n < len(p.idle) && now-p.idle[n].idleAt >= int64(workerIdleTimeout) {
		p.idle[n].task <- handlerTask{}
		n++
	}
	p.dropLocked(n)
	if len(p.idle) == 0 {
		p.armed = false
		return
	}
	p.timer.Reset(time.Duration(p.idle[0].idleAt + int64(workerIdleTimeout) - now))
}

// stopIdle ends every idle worker.
func (p *WorkerPool) stopIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.idle {
		w.task <- handlerTask{}
	}
	p.dropLocked(len(p.idle))
}

// dropLocked removes the n oldest idle workers from the list.
func (p *WorkerPool) dropLocked(n int) {
	if n == 0 {
		return
	}
	k := copy(p.idle, p.idle[n:])
	clear(p.idle[k:])
	p.idle = p.idle[:k]
}
