package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// The printing of "pulse demo": a live timeline, one line per event, and
// the summary table that ends it, in colour on a terminal.

// tlKind says how an event is painted.
type tlKind int

const (
	tlInfo tlKind = iota
	tlBad         // a failure or a detection: red
	tlGood        // a recovery: green
)

// ANSI SGR codes.
const (
	sgrReset   = "\x1b[0m"
	sgrBold    = "\x1b[1m"
	sgrDim     = "\x1b[2m"
	sgrRed     = "\x1b[31m"
	sgrGreen   = "\x1b[32m"
	sgrYellow  = "\x1b[33m"
	sgrBlue    = "\x1b[34m"
	sgrMagenta = "\x1b[35m"
	sgrCyan    = "\x1b[36m"
	sgrGrey    = "\x1b[90m"
	sgrBrBlue  = "\x1b[94m"
)

// tlActorColor is each actor's colour.
var tlActorColor = map[string]string{
	"server": sgrBlue,
	"alice":  sgrCyan,
	"bob":    sgrMagenta,
	"carol":  sgrYellow,
	"push":   sgrBrBlue,
	"proxy":  sgrGrey,
}

// demoColor decides whether to paint: mode is the -color flag. "auto"
// paints when w is a terminal and NO_COLOR is unset or empty; "always" and
// "never" are explicit and win over NO_COLOR.
func demoColor(mode string, w io.Writer) (bool, error) {
	switch mode {
	case "always":
		return true, nil
	case "never":
		return false, nil
	case "auto":
		if os.Getenv("NO_COLOR") != "" {
			return false, nil
		}
		f, ok := w.(*os.File)
		if !ok {
			return false, nil
		}
		fi, err := f.Stat()
		return err == nil && fi.Mode()&os.ModeCharDevice != 0, nil
	}
	return false, usageError{fmt.Sprintf("-color %q: want auto, always or never", mode)}
}

// tlEvent is one line of the timeline.
type tlEvent struct {
	at   time.Duration // since the start
	seq  int           // order of arrival, for events at the same time
	who  string
	kind tlKind
	text string
	meta string // measurements (RTT, phi), printed dimmed after the text
}

// timeline prints events in time order. Events come from many goroutines
// (calls, state hooks, connection hooks, pushes), each stamped when it
// happened; the timeline holds each back for a few milliseconds and prints
// what it holds sorted by time, so that lines do not appear out of order
// when two goroutines report nearly at once.
type timeline struct {
	w     io.Writer
	color bool
	start time.Time
	hold  time.Duration

	mu      sync.Mutex
	pending []tlEvent
	seq     int
	stop    chan struct{}
	done    chan struct{}
}

func newTimeline(w io.Writer, color bool, start time.Time) *timeline {
	t := &timeline{w: w, color: color, start: start, hold: 30 * time.Millisecond,
		stop: make(chan struct{}), done: make(chan struct{})}
	go t.loop()
	return t
}

// add records an event that happened at at.
func (t *timeline) add(at time.Time, who string, kind tlKind, meta, format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	t.pending = append(t.pending, tlEvent{at: at.Sub(t.start), seq: t.seq, who: who, kind: kind,
		text: fmt.Sprintf(format, args...), meta: meta})
}

// say records an event that happens now.
func (t *timeline) say(who string, kind tlKind, format string, args ...any) {
	t.add(time.Now(), who, kind, "", format, args...)
}

func (t *timeline) loop() {
	defer close(t.done)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			t.flush(time.Since(t.start) - t.hold)
		case <-t.stop:
			t.flush(1<<63 - 1)
			return
		}
	}
}

// flush prints, in order, the events that happened up to before.
func (t *timeline) flush(before time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	slices.SortFunc(t.pending, func(a, b tlEvent) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		return a.seq - b.seq
	})
	n := 0
	for n < len(t.pending) && t.pending[n].at <= before {
		fmt.Fprintln(t.w, t.format(t.pending[n]))
		n++
	}
	t.pending = t.pending[n:]
}

// close prints what is left and stops the printer.
func (t *timeline) close() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.done
}

func (t *timeline) paint(sgr, s string) string {
	if !t.color || sgr == "" {
		return s
	}
	return sgr + s + sgrReset
}

func (t *timeline) format(e tlEvent) string {
	var b strings.Builder
	b.WriteString(t.paint(sgrDim, fmt.Sprintf("%7.3fs", e.at.Seconds())))
	b.WriteString("  ")
	b.WriteString(t.paint(tlActorColor[e.who], tlPad(e.who, 6)))
	b.WriteString("  ")
	switch e.kind {
	case tlBad:
		b.WriteString(t.paint(sgrRed, e.text))
	case tlGood:
		b.WriteString(t.paint(sgrGreen, e.text))
	default:
		b.WriteString(e.text)
	}
	if e.meta != "" {
		b.WriteString("  ")
		b.WriteString(t.paint(sgrDim, "["+e.meta+"]"))
	}
	return b.String()
}

// plain prints a line outside the timeline (headers, the summary), after
// every event recorded so far.
func (t *timeline) plain(sgr, format string, args ...any) {
	t.flush(time.Since(t.start))
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintln(t.w, t.paint(sgr, fmt.Sprintf(format, args...)))
}

// demoRow is one expectation of the demo, with its bound and what was
// measured.
type demoRow struct {
	event    string
	bound    string
	measured string // empty: did not happen
	ok       bool
}

// summary prints the rows as a table and reports whether all are OK.
func (t *timeline) summary(title string, rows []*demoRow, notes []string) bool {
	t.flush(1<<63 - 1)
	headers := [3]string{"expected event", "bound", "measured"}
	w := [3]int{}
	for i, h := range headers {
		w[i] = utf8.RuneCountInString(h)
	}
	for _, r := range rows {
		if r.measured == "" {
			r.measured, r.ok = "did not happen", false
		}
		w[0] = max(w[0], utf8.RuneCountInString(r.event))
		w[1] = max(w[1], utf8.RuneCountInString(r.bound))
		w[2] = max(w[2], utf8.RuneCountInString(r.measured))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintln(t.w)
	fmt.Fprintln(t.w, t.paint(sgrBold, title))
	fmt.Fprintln(t.w, t.paint(sgrDim, "  "+tlPad(headers[0], w[0])+"  "+tlPad(headers[1], w[1])+"  "+tlPad(headers[2], w[2])+"  result"))
	all := true
	for _, r := range rows {
		verdict := t.paint(sgrGreen, "OK")
		if !r.ok {
			all = false
			verdict = t.paint(sgrBold+sgrRed, "FAIL")
		}
		fmt.Fprintf(t.w, "  %s  %s  %s  %s\n", tlPad(r.event, w[0]), tlPad(r.bound, w[1]), tlPad(r.measured, w[2]), verdict)
	}
	for _, n := range notes {
		fmt.Fprintln(t.w, t.paint(sgrDim, "  "+n))
	}
	return all
}

func tlPad(s string, n int) string {
	return s + strings.Repeat(" ", max(0, n-utf8.RuneCountInString(s)))
}

// tlSecs formats a duration as seconds with milliseconds: "2.003s".
func tlSecs(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

// tlShort formats a short duration readably: "212µs", "1.4ms", "503ms".
func tlShort(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d < 10*time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
