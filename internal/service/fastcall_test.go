package service

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"testing"
)

// Shapes has a method of every shape fastCallFor takes, and some it
// leaves to reflect.
type Shapes struct{ base int }

type ShapeArgs struct{ A, B int }

func (s *Shapes) Ptr(a *ShapeArgs, r *int) error { *r = s.base + a.A*a.B; return nil }
func (s *Shapes) Ints(a []int, r *int) error {
	for _, v := range a {
		*r += v
	}
	*r += s.base
	return nil
}
func (s *Shapes) Str(a string, r *string) error { *r = fmt.Sprint(s.base, a); return nil }
func (s *Shapes) Map(a map[string]int, r *int) error {
	*r = a["x"] + s.base
	return nil
}
func (s *Shapes) CtxPtr(ctx context.Context, a *ShapeArgs, r *int) error {
	*r = a.A + ctx.Value(shapeKey{}).(int)
	return nil
}
func (s *Shapes) CtxBytes(ctx context.Context, a []byte, r *[]byte) error {
	*r = append(append(*r, a...), byte(ctx.Value(shapeKey{}).(int)))
	return nil
}
func (s *Shapes) Fails(a string, r *string) error { return errors.New("fails: " + a) }
func (s *Shapes) Panics(a *ShapeArgs, r *int) error {
	var m map[string]int
	m["boom"] = a.A // nil map
	return nil
}

// Grow grows its stack and collects garbage with its arguments live, so
// that the runtime must find them by the method's own frame.
func (s *Shapes) Grow(ctx context.Context, a []byte, r *[]byte) error {
	depth(200)
	runtime.GC()
	*r = append(append(*r, a...), byte(ctx.Value(shapeKey{}).(int)), byte(s.base))
	return nil
}

func depth(n int) int {
	var pad [64]byte
	pad[n%64] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return depth(n-1) + int(pad[n%64])
}

func (s *Shapes) Value(a ShapeArgs, r *int) error { *r = a.A - a.B; return nil }  // reflect
func (s *Shapes) Num(a int, r *int) error         { *r = a + s.base; return nil } // reflect

type shapeKey struct{}

// Empty is a zero-size receiver.
type Empty struct{}

func (Empty) Bytes(a []byte, r *[]byte) error { *r = append(*r, a...); return nil }
func (Empty) Ptr(a *ShapeArgs, r *int) error  { *r = a.A + a.B; return nil }

// Counts is a map receiver.
type Counts map[string]int

func (c Counts) Get(a string, r *int) error { *r = c[a]; return nil }

// Outer gets Ptr from the embedded *Shapes: a wrapper method.
type Outer struct{ *Shapes }

// Gen is a generic receiver.
type Gen[T any] struct{ v T }

func (g *Gen[T]) Show(a string, r *string) error { *r = fmt.Sprint(a, g.v); return nil }

// ValueRcvr2 is a receiver neither a pointer nor empty: reflect.
type ValueRcvr2 struct{ n int }

func (v ValueRcvr2) Add(a *ShapeArgs, r *int) error { *r = a.A + v.n; return nil }

// TestFastCallShapes calls every method both directly (fastCallFor) and
// through reflect, and wants the same reply and error from both; the
// shapes fastCallFor cannot take must be left to reflect.
func TestFastCallShapes(t *testing.T) {
	ctx := context.WithValue(context.Background(), shapeKey{}, 7)
	for _, tt := range []struct {
		name   string
		rcvr   any
		method string
		arg    any // stored into the value newArgs returns
		fast   bool
	}{
		{"ptr/ptr", &Shapes{base: 1}, "Ptr", &ShapeArgs{3, 4}, true},
		{"ptr/[]int", &Shapes{base: 1}, "Ints", []int{1, 2, 3}, true},
		{"ptr/string", &Shapes{base: 1}, "Str", "x", true},
		{"ptr/map", &Shapes{base: 1}, "Map", map[string]int{"x": 5}, true},
		{"ptr/ctx/ptr", &Shapes{}, "CtxPtr", &ShapeArgs{A: 2}, true},
		{"ptr/ctx/bytes", &Shapes{}, "CtxBytes", []byte("ab"), true},
		{"ptr/grow", &Shapes{base: 3}, "Grow", []byte("stack"), true},
		{"ptr/error", &Shapes{}, "Fails", "why", true},
		{"ptr/struct", &Shapes{}, "Value", ShapeArgs{5, 2}, false},
		{"ptr/int", &Shapes{base: 1}, "Num", 41, false},
		{"empty/bytes", Empty{}, "Bytes", []byte("hi"), true},
		{"empty/ptr", Empty{}, "Ptr", &ShapeArgs{1, 2}, true},
		{"map/string", Counts{"a": 9}, "Get", "a", true},
		{"embedded", &Outer{&Shapes{base: 2}}, "Ptr", &ShapeArgs{3, 3}, true},
		{"generic", &Gen[int]{v: 5}, "Show", "v=", true},
		{"value", ValueRcvr2{n: 3}, "Add", &ShapeArgs{A: 1}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			svc, mt := registeredMethod(t, tt.rcvr, tt.method)
			if got := mt.fast != nil; got != tt.fast {
				t.Fatalf("direct call = %v, want %v", got, tt.fast)
			}
			run := func(fast fastCall) (any, error) {
				saved := mt.fast
				mt.fast = fast
				defer func() { mt.fast = saved }()
				_, argv := mt.NewArgs()
				if mt.ArgType.Kind() == reflect.Pointer {
					argv.Elem().Set(reflect.ValueOf(tt.arg).Elem())
				} else {
					argv.Set(reflect.ValueOf(tt.arg))
				}
				reply := mt.NewReply()
				err := mt.Call(ctx, svc, argv, reply)
				return reply.Elem().Interface(), err
			}
			want, wantErr := run(nil)
			got, err := run(mt.fast)
			if !reflect.DeepEqual(got, want) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Errorf("direct call = %#v, %v; through reflect = %#v, %v", got, err, want, wantErr)
			}
		})
	}
}
