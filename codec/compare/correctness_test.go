package compare

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse/codec"
)

// chosen names the candidate that docs/codecs.md selects. The checks below
// run on every candidate and print a matrix (go test -v -run Check); only
// the chosen candidate's failures fail the test, since the point of the
// others is to be compared, not fixed.
const chosen = "cbor"

// Base is embedded in Rich.
type Base struct {
	ID      int64
	Created time.Time
}

// Rich exercises the features an RPC codec must get right.
type Rich struct {
	Base                     // embedded: fields are promoted
	Name      string         //
	Ptr       *Inner         // nested pointers
	NilPtr    *Inner         // stays nil
	Counts    map[string]int //
	ByID      map[int]Item   // non-string keys, struct values
	List      []Item         //
	Bytes     []byte         //
	Array     [3]uint16      //
	F32       float32        //
	Neg       int8           //
	U64       uint64         //
	Local     time.Time      // non-UTC offset, nanoseconds
	Any       any            // decodes into a generic value
	secret    string         // unexported: must not be encoded
	unexpInt  int            //
	Interface fmt.Stringer   // nil interface
}

func newRich() Rich {
	return Rich{
		Base:     Base{ID: 9, Created: time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.UTC)},
		Name:     "rich ü€",
		Ptr:      &Inner{Note: "a", Depth: 1, Next: &Inner{Note: "b", Depth: 2}},
		Counts:   map[string]int{"x": 1, "y": -2},
		ByID:     map[int]Item{7: {ID: 7, Name: "seven", Tags: []string{"t"}}},
		List:     []Item{{ID: 1, Name: "one", Score: 0.5}, {ID: 2, OK: true}},
		Bytes:    []byte{0, 1, 2, 255},
		Array:    [3]uint16{1, 65535, 3},
		F32:      1.5,
		Neg:      -128,
		U64:      1<<64 - 1,
		Local:    time.Date(2023, 7, 1, 12, 30, 0, 123456789, time.FixedZone("X", -5*3600-30*60)),
		Any:      "generic",
		secret:   "do-not-send-0123456789",
		unexpInt: 77,
	}
}

type result struct {
	ok   bool
	note string
}

type matrix struct {
	rows  []string
	cells map[string]map[string]result
}

func (m *matrix) set(check, cand string, ok bool, note string) {
	if m.cells == nil {
		m.cells = map[string]map[string]result{}
	}
	if m.cells[check] == nil {
		m.cells[check] = map[string]result{}
		m.rows = append(m.rows, check)
	}
	m.cells[check][cand] = result{ok, note}
}

func (m *matrix) report(t *testing.T) {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("\n| check |")
	for _, c := range Candidates {
		sb.WriteString(" " + c.Name() + " |")
	}
	sb.WriteString("\n|---|")
	for range Candidates {
		sb.WriteString("---|")
	}
	for _, row := range m.rows {
		sb.WriteString("\n| " + row + " |")
		for _, c := range Candidates {
			r, ok := m.cells[row][c.Name()]
			cell := "–"
			if ok {
				cell = "no"
				if r.ok {
					cell = "yes"
				}
				if r.note != "" {
					cell += " (" + r.note + ")"
				}
			}
			sb.WriteString(" " + cell + " |")
		}
	}
	t.Log(sb.String())
	for _, row := range m.rows {
		if r, ok := m.cells[row][chosen]; ok && !r.ok {
			t.Errorf("chosen codec %s fails %q: %s", chosen, row, r.note)
		}
	}
}

// decode runs Unmarshal and turns a panic into a result.
func decode(c codec.Codec, data []byte, v any) (err error, panicked any) {
	defer func() { panicked = recover() }()
	return c.Unmarshal(data, v), nil
}

func TestCheckCorrectness(t *testing.T) {
	var m matrix
	for _, c := range Candidates {
		name := c.Name()
		in := newRich()
		enc, err := c.Append([]byte("prefix"), &in)
		if err != nil {
			m.set("encode Rich", name, false, err.Error())
			continue
		}
		m.set("encode Rich", name, true, "")
		m.set("Append keeps dst prefix", name, bytes.HasPrefix(enc, []byte("prefix")), "")
		enc = enc[len("prefix"):]
		m.set("unexported fields not encoded", name, !bytes.Contains(enc, []byte("do-not-send")), "")

		var out Rich
		out.unexpInt = 5 // must survive decoding untouched
		if err, p := decode(c, enc, &out); err != nil || p != nil {
			m.set("decode Rich", name, false, fmt.Sprint(err, p))
			continue
		}
		m.set("decode Rich", name, true, "")
		m.set("unexported fields ignored on decode", name, out.secret == "" && out.unexpInt == 5, "")
		m.set("embedded struct", name, out.ID == in.ID && out.Created.Equal(in.Created), "")
		m.set("nested pointers", name, reflect.DeepEqual(out.Ptr, in.Ptr) && out.NilPtr == nil, "")
		m.set("maps (string and int keys)", name, reflect.DeepEqual(out.Counts, in.Counts) && reflect.DeepEqual(out.ByID, in.ByID), "")
		m.set("slices, []byte, arrays", name, reflect.DeepEqual(out.List, in.List) && bytes.Equal(out.Bytes, in.Bytes) && out.Array == in.Array, "")
		m.set("numbers at their limits", name, out.F32 == in.F32 && out.Neg == in.Neg && out.U64 == in.U64, "")
		_, inOff := in.Local.Zone()
		_, outOff := out.Local.Zone()
		m.set("time.Time instant (ns)", name, out.Local.Equal(in.Local) && out.Created.Equal(in.Created), out.Local.String())
		m.set("time.Time UTC offset kept", name, inOff == outOff, "")
		m.set("any field", name, reflect.DeepEqual(out.Any, in.Any), fmt.Sprintf("%T", out.Any))

		// Decoding into a pre-filled value: fields absent from the message
		// keep their value (as encoding/json does), fields present win.
		var small Small
		se, _ := c.Append(nil, &Small{A: 1, S: "x"})
		if err := c.Unmarshal(se, &small); err != nil || small != (Small{A: 1, S: "x"}) {
			m.set("small round trip", name, false, fmt.Sprint(err))
		} else {
			m.set("small round trip", name, true, "")
		}

		// RawMessage passes through unchanged both ways.
		raw := codec.RawMessage{1, 2, 3}
		re, _ := c.Append(nil, &raw)
		var rd codec.RawMessage
		err = c.Unmarshal([]byte{4, 5}, &rd)
		m.set("RawMessage passthrough", name, bytes.Equal(re, raw) && err == nil && bytes.Equal(rd, []byte{4, 5}), "")

		// Trailing bytes after a complete value.
		err, p := decode(c, append(append([]byte{}, se...), 0x00, 0x01), new(Small))
		m.set("trailing bytes rejected", name, err != nil && p == nil, fmt.Sprint(err))

		// A decoded []byte must not alias the input buffer.
		be, _ := c.Append(nil, &Large{Data: []byte("aliasing")})
		var lo Large
		if err := c.Unmarshal(be, &lo); err == nil {
			for i := range be {
				be[i] = 'Z'
			}
			m.set("decoded []byte does not alias input", name, string(lo.Data) == "aliasing", "")
		}
	}
	m.report(t)
}

// The checks below feed hostile input. A decoder that believes a length
// prefix or recurses without limit does not return an error: it kills the
// process (fatal error: out of memory, or goroutine stack exceeded). So each
// candidate runs them in a child process (this test binary again) under
// `ulimit -v`, and a child that dies is recorded as a failed check.

// childEnv selects, in a child process, the check and candidate to run.
const childEnv = "COMPARE_CHILD"

// addressSpaceKiB is the child's `ulimit -v`: room for the Go runtime and
// an honest decode, not for a decoder that believes 2^32 elements.
const addressSpaceKiB = 4 << 20 // 4 GiB

// isolated runs check for every candidate and each of its cases (one
// case if cases is nil), each in a child process, and reports the rows the
// children print.
func isolated(t *testing.T, check string, cases func(c codec.Codec) []string,
	child func(t *testing.T, c codec.Codec, sub string, row func(check string, ok bool, note string))) {
	if v := os.Getenv(childEnv); v != "" {
		f := strings.SplitN(v, "|", 3)
		if len(f) != 3 || f[1] != check {
			t.Skip("other check")
		}
		child(t, byName(f[0]), f[2], func(check string, ok bool, note string) {
			fmt.Printf("ROW\t%s\t%v\t%s\n", check, ok, strings.ReplaceAll(note, "\n", " "))
		})
		return
	}
	if runtime.GOOS != "linux" {
		t.Skip("needs sh and ulimit -v")
	}
	var m matrix
	for _, c := range Candidates {
		subs := []string{""}
		if cases != nil {
			subs = cases(c)
		}
		for _, sub := range subs {
			cmd := exec.Command("sh", "-c", `ulimit -v "$LIMIT" && exec "$0" "$@"`,
				os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
			cmd.Env = append(os.Environ(), childEnv+"="+c.Name()+"|"+check+"|"+sub,
				"LIMIT="+strconv.Itoa(addressSpaceKiB))
			out, err := cmd.CombinedOutput()
			for _, l := range strings.Split(string(out), "\n") {
				f := strings.SplitN(l, "\t", 4)
				if len(f) == 4 && f[0] == "ROW" {
					m.set(f[1], c.Name(), f[2] == "true", f[3])
				}
			}
			if err != nil {
				row := check + ": process survives"
				if sub != "" {
					row = check + ": " + sub
				}
				m.set(row, c.Name(), false, "process died: "+firstLine(lineWith(string(out), "fatal error"),
					lineWith(string(out), "panic:"), err.Error()))
			}
		}
	}
	m.report(t)
}

func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func firstLine(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return strings.SplitN(s, "\n", 2)[0]
		}
	}
	return ""
}

// TestCheckGarbage feeds random bytes, mutated encodings and every
// truncation of a valid encoding to every candidate, decoding into several
// kinds of target.
func TestCheckGarbage(t *testing.T) {
	isolated(t, "garbage", nil, func(t *testing.T, c codec.Codec, _ string, row func(string, bool, string)) {
		rng := rand.New(rand.NewPCG(1, 2))
		medium := NewMedium()
		valid, err := c.Append(nil, &medium)
		if err != nil {
			t.Fatal(err)
		}
		panics, firstPanic := 0, ""
		try := func(data []byte) {
			for _, v := range []any{new(Medium), new(Small), new(any), new(map[string]any), new([]int)} {
				if _, p := decode(c, data, v); p != nil {
					if panics == 0 {
						firstPanic = fmt.Sprintf(": %T on %x: %v", v, data[:min(len(data), 16)], p)
					}
					panics++
				}
			}
		}
		for range 3000 {
			b := make([]byte, rng.IntN(64))
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			try(b)
		}
		for range 3000 {
			b := append([]byte(nil), valid...)
			for range 1 + rng.IntN(4) {
				b[rng.IntN(len(b))] = byte(rng.UintN(256))
			}
			try(b)
		}
		row("garbage: no panic on 6000 random or mutated inputs", panics == 0, strconv.Itoa(panics)+" panics"+firstPanic)

		accepted, panics := 0, 0
		for n := range len(valid) {
			err, p := decode(c, valid[:n], new(Medium))
			if p != nil {
				panics++
			} else if err == nil {
				accepted++
			}
		}
		row("garbage: every truncation of a 4 KiB message is an error", accepted == 0 && panics == 0,
			fmt.Sprintf("%d of %d accepted, %d panics", accepted, len(valid), panics))
	})
}

// TestCheckHostileLength measures what a decoder allocates for a few-byte
// input that claims a huge length. A decoder that believes the prefix
// allocates gigabytes (or dies); a safe one allocates next to nothing.
func TestCheckHostileLength(t *testing.T) {
	cases := func(c codec.Codec) []string {
		var descs []string
		for d := range hostile(c.Name()) {
			descs = append(descs, d)
		}
		sort.Strings(descs)
		return descs
	}
	isolated(t, "length", cases, func(t *testing.T, c codec.Codec, desc string, row func(string, bool, string)) {
		h := hostile(c.Name())[desc]
		v := h.v()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err, p := decode(c, h.data, v)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		row("length: "+desc, alloc < 1<<20 && err != nil && p == nil,
			fmt.Sprintf("%d B allocated, err=%v, panic=%v", alloc, err != nil, p))
	})
}

// TestCheckDeepNesting decodes 10 MB of nested one-element arrays into an
// `any`: a decoder without a depth limit recurses until the goroutine stack
// limit (1 GB) kills the process.
func TestCheckDeepNesting(t *testing.T) {
	isolated(t, "depth", nil, func(t *testing.T, c codec.Codec, _ string, row func(string, bool, string)) {
		const depth = 10_000_000
		var open, leaf []byte
		switch c.Name() {
		case "json":
			open, leaf = []byte("["), []byte("1")
		case "cbor":
			open, leaf = []byte{0x81}, []byte{0x01}
		case "gob":
			return // gob cannot decode into an unregistered interface value
		default: // msgpack
			open, leaf = []byte{0x91}, []byte{0x01}
		}
		data := append(bytes.Repeat(open, depth), leaf...)
		if c.Name() == "json" {
			data = append(data, bytes.Repeat([]byte("]"), depth)...)
		}
		var v any
		start := time.Now()
		err, p := decode(c, data, &v)
		row("depth: 10 MB of nested arrays into any is an error", err != nil && p == nil,
			fmt.Sprintf("err=%v panic=%v in %v", firstLine(fmt.Sprint(err)), p, time.Since(start).Round(time.Millisecond)))
	})
}

func hostile(name string) map[string]struct {
	data []byte
	v    func() any
} {
	type in = struct {
		data []byte
		v    func() any
	}
	const n = 1<<32 - 1
	be32 := func(prefix byte) []byte { return binary.BigEndian.AppendUint32([]byte{prefix}, n) }
	be64 := func(prefix byte) []byte { return binary.BigEndian.AppendUint64([]byte{prefix}, 1<<40) }
	ints := func() any { return new([]int64) }
	items := func() any { return new([]Item) }
	bs := func() any { return new([]byte) }
	mp := func() any { return new(map[int]int) }
	switch name {
	case "cbor":
		return map[string]in{
			"array of 2^40 into []int64": {be64(0x9b), ints},
			"array of 2^40 into []Item":  {be64(0x9b), items},
			"bytes of 2^40 into []byte":  {be64(0x5b), bs},
			"map of 2^40 into map":       {be64(0xbb), mp},
		}
	case "vmihailenco-msgpack", "shamaton-msgpack":
		return map[string]in{
			"array of 2^32-1 into []int64": {be32(0xdd), ints},
			"array of 2^32-1 into []Item":  {be32(0xdd), items},
			"bin of 2^32-1 into []byte":    {be32(0xc6), bs},
			"map of 2^32-1 into map":       {be32(0xdf), mp},
		}
	case "json":
		return map[string]in{"unterminated array": {[]byte("[1,2,3,"), ints}}
	case "gob":
		return map[string]in{
			"slice of 2^32-1 into []int64": {gobHostile(&[]int64{7}, 1), ints},
			"slice of 2^32-1 into []Item":  {gobHostile(&[]Item{{}}, 1), items},
			"bytes of 2^32-1 into []byte":  {gobHostile(&[]byte{7}, 1), bs},
			"map of 2^32-1 into map":       {gobHostile(&map[int]int{1: 2}, 2), mp},
		}
	}
	return nil
}

// gobHostile encodes v, a one-element slice or map, with a fresh encoder
// and patches the element count in the last (value) message to 2^32-1;
// tail is how many bytes the element takes.
func gobHostile(v any, tail int) []byte {
	enc, err := gobCodec{}.Append(nil, v)
	if err != nil {
		panic(err)
	}
	last := 0
	for pos := 0; pos < len(enc); pos += 1 + int(enc[pos]) {
		if enc[pos] >= 0x80 {
			panic("gobHostile: long message")
		}
		last = pos
	}
	body := enc[last+1:]
	count := len(body) - tail - 1
	if body[count] != 0x01 {
		panic(fmt.Sprintf("gobHostile: no count of 1 in % x", body))
	}
	patched := append(append(append([]byte{}, body[:count]...), 0xfc, 0xff, 0xff, 0xff, 0xff), body[count+1:]...)
	out := append(append([]byte{}, enc[:last]...), byte(len(patched)))
	return append(out, patched...)
}
