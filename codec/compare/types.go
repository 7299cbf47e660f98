package compare

import (
	"fmt"
	"time"
)

// Small is typical of small RPC arguments.
type Small struct {
	A, B int
	S    string
}

// NewSmall returns the small benchmark message.
func NewSmall() Small { return Small{A: 42, B: -7, S: "hello, pulse"} }

// Item is an element of Medium.Items.
type Item struct {
	ID    int64
	Name  string
	Tags  []string
	Score float64
	OK    bool
}

// Inner is reached from Medium through a pointer.
type Inner struct {
	Note  string
	Depth int
	Next  *Inner
}

// Medium is a message of about 4 KiB of mixed content.
type Medium struct {
	Title  string
	When   time.Time
	Items  []Item
	Blob   []byte
	Counts map[string]int
	Inner  *Inner
}

// NewMedium returns the 4 KiB benchmark message.
func NewMedium() Medium {
	m := Medium{
		Title:  "quarterly report for the northern region",
		When:   time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC),
		Blob:   make([]byte, 1536),
		Counts: make(map[string]int, 16),
		Inner:  &Inner{Note: "outer", Depth: 1, Next: &Inner{Note: "inner", Depth: 2}},
	}
	for i := range m.Blob {
		m.Blob[i] = byte(i * 7)
	}
	for i := 0; i < 28; i++ {
		m.Items = append(m.Items, Item{
			ID:    int64(1000000 + i*977),
			Name:  fmt.Sprintf("item-%03d widget", i),
			Tags:  []string{"red", "large", fmt.Sprintf("batch-%d", i%5)},
			Score: float64(i) * 1.37,
			OK:    i%3 == 0,
		})
	}
	for i := 0; i < 16; i++ {
		m.Counts[fmt.Sprintf("counter-%02d", i)] = i * i * 31
	}
	return m
}

// Large carries 1 MiB of bytes.
type Large struct {
	Name string
	Data []byte
}

// NewLarge returns the 1 MiB benchmark message.
func NewLarge() Large {
	l := Large{Name: "blob", Data: make([]byte, 1<<20)}
	for i := range l.Data {
		l.Data[i] = byte(i)
	}
	return l
}
