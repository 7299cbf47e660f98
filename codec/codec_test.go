package codec_test

import (
	"github.com/fxamacker/cbor/v2"

	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse/codec"
)

type small struct {
	A, B int
	S    string
}

type inner struct {
	Note string
	Next *inner
}

type Base struct {
	ID    int64
	Owner string
}

type rich struct {
	Base          // embedded: fields are promoted
	Name   string //
	Ptr    *inner // nested pointers
	Nil    *inner // stays nil
	Counts map[string]int
	ByID   map[int]small
	List   []small
	Bytes  []byte
	Array  [2]int8
	When   time.Time
	Any    any
	hidden int // unexported: neither encoded nor decoded
}

func newRich() rich {
	return rich{
		Base:   Base{ID: 7, Owner: "ann"},
		Name:   "naïve ☃",
		Ptr:    &inner{Note: "a", Next: &inner{Note: "b"}},
		Counts: map[string]int{"x": 1, "y": -2},
		ByID:   map[int]small{3: {A: 3, S: "three"}},
		List:   []small{{A: 1}, {B: 2, S: "two"}},
		Bytes:  []byte{0, 1, 2, 0xff},
		Array:  [2]int8{-128, 127},
		When:   time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.UTC),
		Any:    "generic",
		hidden: 42,
	}
}

// medium is about 4 KiB once encoded: typical of a larger RPC message.
type medium struct {
	Title  string
	When   time.Time
	Items  []item
	Blob   []byte
	Counts map[string]int
	Inner  *inner
}

type item struct {
	ID    int64
	Name  string
	Tags  []string
	Score float64
	OK    bool
}

func newMedium() medium {
	m := medium{
		Title:  "quarterly report for the northern region",
		When:   time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC),
		Blob:   make([]byte, 1536),
		Counts: make(map[string]int),
		Inner:  &inner{Note: "outer", Next: &inner{Note: "inner"}},
	}
	for i := range m.Blob {
		m.Blob[i] = byte(i * 7)
	}
	for i := range 28 {
		m.Items = append(m.Items, item{
			ID:    int64(1000000 + i*977),
			Name:  fmt.Sprintf("item-%03d widget", i),
			Tags:  []string{"red", "large", fmt.Sprintf("batch-%d", i%5)},
			Score: float64(i) * 1.37,
			OK:    i%3 == 0,
		})
	}
	for i := range 16 {
		m.Counts[fmt.Sprintf("counter-%02d", i)] = i * i * 31
	}
	return m
}

// structCodecs are the codecs that encode arbitrary Go values.
var structCodecs = []codec.Codec{codec.JSON, codec.CBOR}

func TestRoundTrip(t *testing.T) {
	wantRich := newRich()
	wantRich.hidden = 0 // unexported fields are not carried
	cases := []struct {
		name string
		in   any // what is encoded
		out  any // pointer to decode into
		want any // *out afterwards
	}{
		{"small", &small{A: 1, B: -2, S: "x"}, new(small), small{A: 1, B: -2, S: "x"}},
		{"small by value", small{A: 1}, new(small), small{A: 1}},
		{"rich", ptr(newRich()), new(rich), wantRich},
		{"medium", ptr(newMedium()), new(medium), newMedium()},
		{"nil pointer", (*small)(nil), new(*small), (*small)(nil)},
		{"nil into existing pointer", (*small)(nil), ptr(&small{A: 1}), (*small)(nil)},
		{"pointer to pointer", ptr(&small{A: 5}), new(*small), &small{A: 5}},
		{"nil slice", []int(nil), new([]int), []int(nil)},
		{"empty slice", []int{}, new([]int), []int{}},
		{"nil map", map[string]int(nil), new(map[string]int), map[string]int(nil)},
		{"map", map[string][]int{"a": {1}, "b": nil}, new(map[string][]int), map[string][]int{"a": {1}, "b": nil}},
		{"string", "héllo", new(string), "héllo"},
		{"empty string", "", new(string), ""},
		{"int", -12345678901, new(int64), int64(-12345678901)},
		{"uint64 max", uint64(1<<64 - 1), new(uint64), uint64(1<<64 - 1)},
		{"bool", true, new(bool), true},
		{"float", 3.25, new(float64), 3.25},
		{"bytes", []byte("bytes"), new([]byte), []byte("bytes")},
		{"time", time.Date(2000, 1, 1, 0, 0, 0, 1, time.UTC), new(time.Time), time.Date(2000, 1, 1, 0, 0, 0, 1, time.UTC)},
		{"unknown fields ignored", &rich{Name: "n", Base: Base{ID: 1}}, new(small), small{}},
		{"missing fields left alone", &small{A: 1}, &rich{Name: "kept"}, rich{Name: "kept"}},
	}
	for _, c := range structCodecs {
		for _, tc := range cases {
			t.Run(c.Name()+"/"+tc.name, func(t *testing.T) {
				prefix := []byte("head")
				enc, err := c.Append(slices.Clip(prefix), tc.in)
				if err != nil {
					t.Fatalf("Append: %v", err)
				}
				if !bytes.HasPrefix(enc, prefix) {
					t.Fatalf("Append lost dst: %q", enc)
				}
				out := reflect.ValueOf(tc.out)
				if err := c.Unmarshal(enc[len(prefix):], tc.out); err != nil {
					t.Fatalf("Unmarshal(% x): %v", enc[len(prefix):], err)
				}
				if got := out.Elem().Interface(); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("round trip:\n got %#v\nwant %#v", got, tc.want)
				}
			})
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestTimeKeepsOffset(t *testing.T) {
	in := time.Date(2023, 7, 1, 12, 30, 0, 123456789, time.FixedZone("", -(5*3600+1800)))
	for _, c := range structCodecs {
		enc, err := c.Append(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		var out time.Time
		if err := c.Unmarshal(enc, &out); err != nil {
			t.Fatal(err)
		}
		_, inOff := in.Zone()
		_, outOff := out.Zone()
		if !out.Equal(in) || inOff != outOff {
			t.Errorf("%s: %v became %v", c.Name(), in, out)
		}
	}
}

func TestUnexportedFieldsIgnored(t *testing.T) {
	type secret struct {
		Public  string
		private string
	}
	for _, c := range structCodecs {
		enc, err := c.Append(nil, &secret{Public: "p", private: "do-not-send"})
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(enc, []byte("do-not-send")) {
			t.Errorf("%s encodes an unexported field: %q", c.Name(), enc)
		}
		out := secret{private: "mine"}
		if err := c.Unmarshal(enc, &out); err != nil || out != (secret{Public: "p", private: "mine"}) {
			t.Errorf("%s: got %+v, %v", c.Name(), out, err)
		}
	}
}

// TestCBORIntoAny checks the Go types CBOR produces for an interface value.
func TestCBORIntoAny(t *testing.T) {
	when := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)
	enc, err := codec.CBOR.Append(nil, map[string]any{"n": -1, "u": 2, "s": "x", "t": when, "l": []any{true, nil}})
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := codec.CBOR.Unmarshal(enc, &out); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"n": int64(-1), "u": uint64(2), "s": "x", "t": when, "l": []any{true, nil}}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("got %#v\nwant %#v", out, want)
	}
}

func TestRawMessagePassthrough(t *testing.T) {
	for _, c := range []codec.Codec{codec.JSON, codec.CBOR, codec.Raw} {
		t.Run(c.Name(), func(t *testing.T) {
			msg := codec.RawMessage("\x00not valid in any codec\xff")
			enc, err := c.Append([]byte("head"), &msg)
			if err != nil || string(enc) != "head"+string(msg) {
				t.Errorf("Append(*RawMessage) = %q, %v", enc, err)
			}
			data := []byte("\xffalso not valid\x00")
			out := codec.RawMessage("previous contents, longer than data")
			if err := c.Unmarshal(data, &out); err != nil || string(out) != string(data) {
				t.Fatalf("Unmarshal(*RawMessage) = %q, %v", out, err)
			}
			data[0] = 'X' // the caller reuses its buffer
			if out[0] != 0xff {
				t.Errorf("Unmarshal(*RawMessage) aliases its input")
			}
		})
	}
	// A RawMessage value passes through CBOR and raw too.
	for _, c := range []codec.Codec{codec.CBOR, codec.Raw} {
		enc, err := c.Append(nil, codec.RawMessage{1, 2})
		if err != nil || !bytes.Equal(enc, []byte{1, 2}) {
			t.Errorf("%s: Append(RawMessage) = %x, %v", c.Name(), enc, err)
		}
	}
}

func TestNilPointers(t *testing.T) {
	want := map[string]string{codec.JSONName: "null", codec.CBORName: "\xf6"}
	for _, c := range structCodecs {
		enc, err := c.Append(nil, (*small)(nil))
		if err != nil || string(enc) != want[c.Name()] {
			t.Errorf("%s: Append(nil *T) = %q, %v", c.Name(), enc, err)
		}
		enc, err = c.Append(nil, nil)
		if err != nil || string(enc) != want[c.Name()] {
			t.Errorf("%s: Append(nil) = %q, %v", c.Name(), enc, err)
		}
		enc, err = c.Append(nil, (*codec.RawMessage)(nil))
		if err != nil || string(enc) != want[c.Name()] {
			t.Errorf("%s: Append(nil *RawMessage) = %q, %v", c.Name(), enc, err)
		}
		// Decoding needs a non-nil pointer.
		valid, _ := c.Append(nil, small{A: 1})
		for _, v := range []any{nil, (*small)(nil), small{}, (*codec.RawMessage)(nil)} {
			if err := c.Unmarshal(valid, v); err == nil {
				t.Errorf("%s: Unmarshal into %#v succeeded", c.Name(), v)
			}
		}
	}
}

func TestRaw(t *testing.T) {
	b := []byte("payload")
	rm := codec.RawMessage("payload")
	for _, in := range []any{b, &b, rm, &rm} {
		enc, err := codec.Raw.Append([]byte(">"), in)
		if err != nil || string(enc) != ">payload" {
			t.Errorf("Append(%T) = %q, %v", in, enc, err)
		}
	}
	for _, in := range []any{nil, (*[]byte)(nil), (*codec.RawMessage)(nil)} {
		enc, err := codec.Raw.Append([]byte(">"), in)
		if err != nil || string(enc) != ">" {
			t.Errorf("Append(%#v) = %q, %v", in, enc, err)
		}
	}
	var out []byte
	if err := codec.Raw.Unmarshal(b, &out); err != nil || string(out) != "payload" {
		t.Errorf("Unmarshal(*[]byte) = %q, %v", out, err)
	}
	b[0] = 'P'
	if out[0] != 'p' {
		t.Error("Unmarshal(*[]byte) aliases its input")
	}

	for _, in := range []any{"string", 1, small{}, &small{}, []int{1}} {
		_, err := codec.Raw.Append(nil, in)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("cannot encode %T", in)) {
			t.Errorf("Append(%T): got error %v", in, err)
		}
	}
	for _, v := range []any{nil, []byte{}, new(string), new(small), codec.RawMessage{}} {
		err := codec.Raw.Unmarshal([]byte("x"), v)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("cannot decode into %T", v)) {
			t.Errorf("Unmarshal(%T): got error %v", v, err)
		}
	}
}

// decodeNoPanic reports a panic from Unmarshal as a test failure.
func decodeNoPanic(t *testing.T, c codec.Codec, data []byte, v any) (err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("%s: Unmarshal(%T) of % x panicked: %v", c.Name(), v, data, p)
		}
	}()
	return c.Unmarshal(data, v)
}

func targets() []any {
	return []any{new(small), new(rich), new(medium), new(any), new(map[string]any), new([]int), new(string), new(time.Time)}
}

func TestGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, c := range structCodecs {
		valid, err := c.Append(nil, ptr(newRich()))
		if err != nil {
			t.Fatal(err)
		}
		// Every proper prefix of a value is an error.
		for n := range len(valid) {
			if err := decodeNoPanic(t, c, valid[:n], new(rich)); err == nil {
				t.Errorf("%s: truncation to %d of %d bytes decoded without error", c.Name(), n, len(valid))
			}
		}
		// So is anything after it.
		if err := decodeNoPanic(t, c, append(slices.Clip(valid), '0'), new(rich)); err == nil {
			t.Errorf("%s: trailing byte accepted", c.Name())
		}
		// Random and mutated input may decode or not, but never panics.
		for range 2000 {
			b := make([]byte, rng.IntN(48))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			if rng.IntN(2) == 0 {
				b = slices.Clone(valid)
				for range 1 + rng.IntN(3) {
					b[rng.IntN(len(b))] = byte(rng.Uint32())
				}
			}
			for _, v := range targets() {
				decodeNoPanic(t, c, b, v)
			}
		}
	}
}

// TestCBORHostile feeds the CBOR decoder input built to exhaust memory or
// stack: every case must fail fast and allocate next to nothing.
func TestCBORHostile(t *testing.T) {
	head := func(major byte, n uint64) []byte { // 8-byte length argument
		return binary.BigEndian.AppendUint64([]byte{major<<5 | 27}, n)
	}
	deep := append(bytes.Repeat([]byte{0x81}, 1_000_000), 0x01) // [[[[...1]]]]
	cases := []struct {
		name string
		data []byte
		v    any
	}{
		{"array of 2^62 ints", head(4, 1<<62), new([]int64)},
		{"array of 2^40 structs", head(4, 1<<40), new([]medium)},
		{"array of 2^40 into any", head(4, 1<<40), new(any)},
		{"byte string of 2^62", head(2, 1<<62), new([]byte)},
		{"text string of 2^62", head(3, 1<<62), new(string)},
		{"map of 2^40 pairs", head(5, 1<<40), new(map[string]int)},
		{"map of 2^40 pairs into struct", head(5, 1<<40), new(small)},
		{"a million nested arrays into any", deep, new(any)},
		{"a million nested arrays into a recursive type", append(bytes.Repeat([]byte{0xa1, 0x64, 'N', 'e', 'x', 't'}, 1_000_000), 0xf6), new(inner)},
		{"invalid UTF-8", []byte{0x62, 0xff, 0xfe}, new(string)},
		{"too many elements", append(head(4, codec.CBORMaxElements+1), make([]byte, codec.CBORMaxElements+1)...), new([]int)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := decodeNoPanic(t, codec.CBOR, tc.data, tc.v)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("no error")
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<10 {
				t.Errorf("allocated %d bytes for a %d-byte message (%v)", alloc, len(tc.data), err)
			}
		})
	}
}

// TestCBORAllocs pins down the allocation cost of a small call's arguments:
// encoding into a buffer with room allocates nothing, and decoding
// allocates only the string.
func TestCBORAllocs(t *testing.T) {
	in := small{A: 1, B: 2, S: "hello"}
	buf := make([]byte, 0, 64)
	var out small
	enc := testing.AllocsPerRun(100, func() {
		buf, _ = codec.CBOR.Append(buf[:0], &in)
	})
	dec := testing.AllocsPerRun(100, func() {
		out = small{}
		_ = codec.CBOR.Unmarshal(buf, &out)
	})
	if enc != 0 || dec > 1 || out != in {
		t.Errorf("Append: %v allocs, Unmarshal: %v allocs (want 0 and 1); decoded %+v", enc, dec, out)
	}
}

func TestRegistry(t *testing.T) {
	for name, want := range map[string]codec.Codec{
		codec.JSONName: codec.JSON, codec.CBORName: codec.CBOR, codec.RawName: codec.Raw,
	} {
		if got := codec.Get(name); got != want {
			t.Errorf("Get(%q) = %v", name, got)
		} else if got.Name() != name {
			t.Errorf("codec registered as %q is named %q", name, got.Name())
		}
	}
	if got := codec.Get("no-such-codec"); got != nil {
		t.Errorf("Get of an unknown name = %v", got)
	}

	names := codec.Names()
	if !slices.IsSorted(names) {
		t.Errorf("Names() not sorted: %q", names)
	}
	for _, n := range []string{codec.CBORName, codec.JSONName, codec.RawName} {
		if !slices.Contains(names, n) {
			t.Errorf("Names() = %q lacks %q", names, n)
		}
	}

	// Registrations last as long as the process, which runs this test
	// again under go test -count=N: register only what is not there yet.
	register := func(c codec.Codec) {
		if codec.Get(c.Name()) == nil {
			codec.Register(c)
		}
	}
	custom := namedCodec{codec.JSON, "test-registry-codec"}
	register(custom)
	if codec.Get(custom.Name()) != custom || !slices.Contains(codec.Names(), custom.Name()) {
		t.Errorf("registered codec not found")
	}

	for _, c := range []codec.Codec{
		codec.JSON, codec.CBOR, codec.Raw, custom, // duplicates
		namedCodec{codec.JSON, ""},
		namedCodec{codec.JSON, strings.Repeat("x", 256)},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%.20q) did not panic", c.Name())
				}
			}()
			codec.Register(c)
		}()
	}
	register(namedCodec{codec.JSON, strings.Repeat("y", 255)}) // the longest name allowed
	if codec.Get(strings.Repeat("y", 255)) == nil {
		t.Error("the codec with the longest name allowed was not registered")
	}
}

type namedCodec struct {
	codec.Codec
	name string
}

func (c namedCodec) Name() string { return c.name }

// FuzzUnmarshal decodes arbitrary input with JSON and CBOR into several
// targets. Decoding must never panic, and whatever decodes into an
// interface value must encode again and decode to the same encoding.
func FuzzUnmarshal(f *testing.F) {
	for _, c := range structCodecs {
		for _, v := range []any{small{A: 1, S: "s"}, newRich(), map[string]any{"k": []any{1.5, "v"}}, "str", -1} {
			b, err := c.Append(nil, v)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x9f, 0x9f, 0xff, 0xff})                   // indefinite-length arrays
	f.Add([]byte{0xc1, 0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0}) // tag 1 (epoch time) with NaN
	f.Add([]byte(`{"A":1e400,"S":"\ud800"}`))
	f.Add([]byte("\xc1\x1b\x00\x04\x00\x00\x00\x00\x00\x00")) // epoch time in year 35 million
	// Tag 6 around a tag-0 time in year 144394342 (found by fuzzing).
	f.Add([]byte("\xc6\xc0\x78\x19144394342-01-01T12:53:04Z"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range structCodecs {
			for _, v := range targets() {
				decodeNoPanic(t, c, data, v)
			}
			var v any
			if decodeNoPanic(t, c, data, &v) != nil || hasTimeBeyondRFC3339(v) {
				continue
			}
			enc, err := c.Append(nil, v)
			if err != nil {
				t.Fatalf("%s: decoded %#v but cannot encode it: %v", c.Name(), v, err)
			}
			var again any
			if err := c.Unmarshal(enc, &again); err != nil {
				t.Fatalf("%s: re-encoding % x of %#v does not decode: %v", c.Name(), enc, v, err)
			}
		}
	})
}

// hasTimeBeyondRFC3339 reports whether v holds a time.Time outside years
// 0 to 9999. CBOR decodes such a time from an epoch (tag 1) but encodes it
// as RFC 3339 text that no RFC 3339 parser accepts, so it cannot round-trip;
// JSON refuses to encode it.
func hasTimeBeyondRFC3339(v any) bool {
	switch v := v.(type) {
	case time.Time:
		return v.Year() < 0 || v.Year() > 9999
	case cbor.Tag:
		return hasTimeBeyondRFC3339(v.Content)
	case *cbor.Tag:
		return v != nil && hasTimeBeyondRFC3339(v.Content)
	case []any:
		return slices.ContainsFunc(v, hasTimeBeyondRFC3339)
	case map[string]any:
		for _, e := range v {
			if hasTimeBeyondRFC3339(e) {
				return true
			}
		}
	}
	return false
}

func BenchmarkCodecs(b *testing.B) {
	msgs := []struct {
		name string
		in   any
		out  func() any
	}{
		{"small", &small{A: 42, B: -7, S: "hello, pulse"}, func() any { return new(small) }},
		{"4KiB", ptr(newMedium()), func() any { return new(medium) }},
	}
	for _, m := range msgs {
		for _, c := range structCodecs {
			b.Run("msg="+m.name+"/codec="+c.Name(), func(b *testing.B) {
				enc, err := c.Append(nil, m.in)
				if err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, 0, 2*len(enc))
				out := m.out()
				zero := reflect.Zero(reflect.TypeOf(out).Elem())
				b.ReportAllocs()
				b.SetBytes(int64(len(enc)))
				for b.Loop() {
					buf, err = c.Append(buf[:0], m.in)
					if err != nil {
						b.Fatal(err)
					}
					reflect.ValueOf(out).Elem().Set(zero)
					if err := c.Unmarshal(buf, out); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		// Raw moves opaque bytes: the same number of bytes as CBOR's
		// encoding of the message, for comparison.
		b.Run("msg="+m.name+"/codec="+codec.RawName, func(b *testing.B) {
			payload, _ := codec.CBOR.Append(nil, m.in)
			buf := make([]byte, 0, len(payload))
			var out []byte
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				buf, _ = codec.Raw.Append(buf[:0], &payload) // a []byte would be boxed: 1 alloc
				if err := codec.Raw.Unmarshal(buf, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
