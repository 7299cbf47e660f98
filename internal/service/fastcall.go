package service

import (
	"context"
	"reflect"
	"unsafe"
)

// Calling a method through reflect.Value.Call costs a few hundred
// nanoseconds and two allocations per call (the argument and result
// slices), which on small calls is more than the rest of dispatch. Like
// net/rpc, Pulse finds methods by reflection at registration; unlike
// net/rpc, for the common shapes of method it then calls them directly.
//
// A method expression (*T).M of type func(*T, *A, *R) error is called
// with the same calling convention as a func(unsafe.Pointer,
// unsafe.Pointer, unsafe.Pointer) error: each parameter is one pointer
// word, in a register or on the stack alike, and the callee's own frame
// describes its pointers to the garbage collector. The same holds for
// every shape of value that is laid out alike: all slices are (pointer,
// length, capacity), all strings (pointer, length), a map or a channel is
// one pointer, and a zero-size receiver takes no register at all. So a
// method whose receiver, arguments and reply have one of those shapes is
// called through a func value of the matching shape, built once per
// method. Any other method (a receiver or an argument that is a struct
// value, a number, an interface) is called through reflect, as before.

// fastCall calls a method: rcvr is the receiver's pointer word (nil for a
// zero-size receiver), ctx is passed only to a method that takes one, arg
// is the argument itself when the argument is a pointer, or else points to
// it, and reply is the reply pointer.
type fastCall func(rcvr unsafe.Pointer, ctx context.Context, arg, reply unsafe.Pointer) error

// rcvrShape and argShape are the layouts a fastCall passes on.
type (
	rcvrShape interface{ unsafe.Pointer | struct{} }
	argShape  interface {
		unsafe.Pointer | []byte | string
	}
)

// pointerShaped reports whether values of t are one pointer word that
// reflect.Value.UnsafePointer returns. (A func value is one word too, but
// UnsafePointer returns its code pointer, not the value.)
func pointerShaped(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.UnsafePointer, reflect.Map, reflect.Chan:
		return true
	}
	return false
}

// fastCallFor returns a direct call of method m of receiver type rcvr, and
// whether its argument is passed by reference (see fastCall); nil when the
// method's shape must go through reflect.
func fastCallFor(rcvr reflect.Type, m reflect.Method, WithCtx bool, ArgType reflect.Type) (fastCall, bool) {
	switch {
	case pointerShaped(rcvr):
		return fastArg[unsafe.Pointer](m.Func, WithCtx, ArgType)
	case rcvr.Size() == 0:
		return fastArg[struct{}](m.Func, WithCtx, ArgType)
	}
	return nil, false
}

func fastArg[R rcvrShape](fn reflect.Value, WithCtx bool, ArgType reflect.Type) (fastCall, bool) {
	switch {
	case ArgType.Kind() == reflect.Pointer:
		return fastDirect[R](fn, WithCtx), false
	case pointerShaped(ArgType):
		return fastByRef[R, unsafe.Pointer](fn, WithCtx), true
	case ArgType.Kind() == reflect.Slice:
		return fastByRef[R, []byte](fn, WithCtx), true
	case ArgType.Kind() == reflect.String:
		return fastByRef[R, string](fn, WithCtx), true
	}
	return nil, false
}

// fastDirect calls a method whose argument is a pointer, passed as it is.
func fastDirect[R rcvrShape](fn reflect.Value, WithCtx bool) fastCall {
	if WithCtx {
		f := funcAs[func(R, context.Context, unsafe.Pointer, unsafe.Pointer) error](fn)
		return func(r unsafe.Pointer, ctx context.Context, a, reply unsafe.Pointer) error {
			return f(*(*R)(unsafe.Pointer(&r)), ctx, a, reply)
		}
	}
	f := funcAs[func(R, unsafe.Pointer, unsafe.Pointer) error](fn)
	return func(r unsafe.Pointer, _ context.Context, a, reply unsafe.Pointer) error {
		return f(*(*R)(unsafe.Pointer(&r)), a, reply)
	}
}

// fastByRef calls a method whose argument a points to.
func fastByRef[R rcvrShape, A argShape](fn reflect.Value, WithCtx bool) fastCall {
	if WithCtx {
		f := funcAs[func(R, context.Context, A, unsafe.Pointer) error](fn)
		return func(r unsafe.Pointer, ctx context.Context, a, reply unsafe.Pointer) error {
			return f(*(*R)(unsafe.Pointer(&r)), ctx, *(*A)(a), reply)
		}
	}
	f := funcAs[func(R, A, unsafe.Pointer) error](fn)
	return func(r unsafe.Pointer, _ context.Context, a, reply unsafe.Pointer) error {
		return f(*(*R)(unsafe.Pointer(&r)), *(*A)(a), reply)
	}
}

// funcAs returns the func value fn holds as a func of type F, which the
// caller guarantees has fn's calling convention. A func value is one word
// (a pointer to its code and context), which an interface holds as its
// data word.
func funcAs[F any](fn reflect.Value) F {
	v := fn.Interface()
	var f F
	*(*unsafe.Pointer)(unsafe.Pointer(&f)) = (*[2]unsafe.Pointer)(unsafe.Pointer(&v))[1]
	return f
}
