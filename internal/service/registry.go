// Package service is Pulse's method registry: it finds, by reflection, the
// methods of a registered value that have net/rpc's shape, looks them up
// by "Service.Method" without allocating, makes their argument and reply
// values, and calls them, directly for the common shapes (fastcall.go).
// It knows nothing of connections.
package service

import (
	"context"
	"errors"
	"fmt"
	"go/token"
	"maps"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

var (
	typeOfError   = reflect.TypeFor[error]()
	typeOfContext = reflect.TypeFor[context.Context]()
)

// Method is one callable method of a registered service.
type Method struct {
	method    reflect.Method
	svc       *Service // set when the service is registered
	WithCtx   bool
	ArgType   reflect.Type
	replyType reflect.Type
	replyElem reflect.Type  // replyType.Elem()
	replyKind reflect.Kind  // replyElem.Kind()
	noItems   reflect.Value // an empty slice of replyElem, when it is a slice type
	fast      fastCall      // nil: called through reflect (fastcall.go)
	argByRef  bool          // fast takes a pointer to the argument
	// Sched is the connection scheduler's record of how long this
	// method's calls take when run on a connection's reader. It lives
	// here so that the scheduler finds it without a lookup; only
	// internal/session reads or writes it.
	Sched Sched
}

// Sched is what the session's scheduler keeps per method (see
// internal/session/onreader.go).
type Sched struct {
	OffReader atomic.Int32 // calls left to run on workers after one held a reader too long
	OffBurst  atomic.Int32 // likewise, for calls with others behind them, once the method is found long
	SlowScore atomic.Int32 // how long its calls on readers have been
}

// Name returns the method's name, without its service's.
func (mt *Method) Name() string { return mt.method.Name }

// Service is a registered receiver and its methods.
type Service struct {
	Name    string
	rcvr    reflect.Value
	word    unsafe.Pointer // rcvr as a fastCall takes it
	typ     reflect.Type
	methods map[string]*Method
}

// Registry maps "Service.Method" to methods. Reads far outnumber writes
// (registration happens at start-up, lookups on every call), so lookups go
// through an atomic pointer to an immutable table and writers copy it.
type Registry struct {
	mu     sync.Mutex // serializes writers
	tables atomic.Pointer[regTable]
}

// regTable is a Registry's contents at one time. Never modified once
// stored: register makes a new one.
type regTable struct {
	services map[string]*Service
	// methods holds every method under its full name, "Service.Method",
	// so that a call's method is found with one map index; services
	// tells an unknown service from an unknown method when it is not.
	methods map[string]*Method
}

// noServices is the table of every Registry that has none, shared, so
// that a client that serves no calls (most of them) allocates no map.
var noServices = regTable{services: map[string]*Service{}, methods: map[string]*Method{}}

func NewRegistry() *Registry {
	r := &Registry{}
	r.tables.Store(&noServices)
	return r
}

// Register adds rcvr's suitable methods under name (the receiver's type
// name when useName is false). Like net/rpc, it reports an error when the
// type is not exported or has no suitable method, and when the name is taken.
func (r *Registry) Register(rcvr any, name string, useName bool) error {
	s := &Service{typ: reflect.TypeOf(rcvr), rcvr: reflect.ValueOf(rcvr)}
	if rcvr == nil {
		return errors.New("pulse: Register of nil receiver")
	}
	sname := name
	if !useName {
		sname = reflect.Indirect(s.rcvr).Type().Name()
	}
	if sname == "" {
		return fmt.Errorf("pulse: no service name for type %v", s.typ)
	}
	if !useName && !token.IsExported(sname) {
		return fmt.Errorf("pulse: type %s is not exported", sname)
	}
	if strings.Contains(sname, ".") {
		return fmt.Errorf("pulse: service name %q must not contain a dot", sname)
	}
	s.Name = sname
	if pointerShaped(s.typ) {
		s.word = s.rcvr.UnsafePointer()
	}
	var problems []string
	s.methods = suitableMethods(s.typ, &problems)
	if len(s.methods) == 0 {
		msg := fmt.Sprintf("pulse: type %s has no exported methods of suitable type", sname)
		// Like net/rpc: a value receiver may hide pointer methods.
		if pm := suitableMethods(reflect.PointerTo(s.typ), nil); len(pm) != 0 {
			msg += " (hint: pass a pointer to value of that type)"
		} else if len(problems) > 0 {
			msg += ": " + strings.Join(problems, "; ")
		}
		return errors.New(msg)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.tables.Load()
	if _, dup := old.services[sname]; dup {
		return fmt.Errorf("pulse: service already defined: %s", sname)
	}
	t := &regTable{
		services: maps.Clone(old.services),
		methods:  make(map[string]*Method, len(old.methods)+len(s.methods)),
	}
	t.services[sname] = s
	maps.Copy(t.methods, old.methods)
	for mname, mt := range s.methods {
		mt.svc = s
		t.methods[sname+"."+mname] = mt
	}
	r.tables.Store(t)
	return nil
}

// suitableMethods returns the methods of typ that have one of the shapes
//
//	func (t *T) M(args A, reply *R) error
//	func (t *T) M(ctx context.Context, args A, reply *R) error
//
// where A and R are exported or builtin types. When problems is non-nil,
// it collects why exported methods were skipped.
func suitableMethods(typ reflect.Type, problems *[]string) map[string]*Method {
	methods := make(map[string]*Method)
	report := func(format string, args ...any) {
		if problems != nil {
			*problems = append(*problems, fmt.Sprintf(format, args...))
		}
	}
	for m := range typ.Methods() {
		mtype := m.Type
		if !m.IsExported() {
			continue
		}
		in := mtype.NumIn() // includes the receiver
		WithCtx := in == 4 && mtype.In(1) == typeOfContext
		if in != 3 && !WithCtx {
			report("method %s has %d arguments, want (args, *reply) or (ctx, args, *reply)", m.Name, in-1)
			continue
		}
		first := 1
		if WithCtx {
			first = 2
		}
		ArgType := mtype.In(first)
		if !isExportedOrBuiltinType(ArgType) {
			report("argument type of method %s is not exported: %v", m.Name, ArgType)
			continue
		}
		replyType := mtype.In(first + 1)
		if replyType.Kind() != reflect.Pointer {
			report("reply type of method %s is not a pointer: %v", m.Name, replyType)
			continue
		}
		if !isExportedOrBuiltinType(replyType) {
			report("reply type of method %s is not exported: %v", m.Name, replyType)
			continue
		}
		if mtype.NumOut() != 1 || mtype.Out(0) != typeOfError {
			report("method %s must return exactly one value, of type error", m.Name)
			continue
		}
		fast, byRef := fastCallFor(typ, m, WithCtx, ArgType)
		mt := &Method{method: m, WithCtx: WithCtx, ArgType: ArgType, replyType: replyType, fast: fast, argByRef: byRef}
		mt.replyElem = replyType.Elem()
		mt.replyKind = mt.replyElem.Kind()
		if mt.replyKind == reflect.Slice {
			mt.noItems = reflect.MakeSlice(mt.replyElem, 0, 0)
		}
		methods[m.Name] = mt
	}
	return methods
}

func isExportedOrBuiltinType(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return token.IsExported(t.Name()) || t.PkgPath() == ""
}

// Lookup finds the method named "Service.Method". It does not allocate:
// the map index with a converted []byte is optimized by the compiler.
func (r *Registry) Lookup(serviceMethod []byte) (*Service, *Method, LookupResult) {
	t := r.tables.Load()
	if mt := t.methods[string(serviceMethod)]; mt != nil {
		return mt.svc, mt, Found
	}
	dot := -1
	for i := len(serviceMethod) - 1; i >= 0; i-- {
		if serviceMethod[i] == '.' {
			dot = i
			break
		}
	}
	if dot < 0 {
		return nil, nil, UnknownService
	}
	svc := t.services[string(serviceMethod[:dot])]
	if svc == nil {
		return nil, nil, UnknownService
	}
	mt := svc.methods[string(serviceMethod[dot+1:])]
	if mt == nil {
		return svc, nil, UnknownMethod
	}
	return svc, mt, Found
}

// LookupResult says what Lookup found.
type LookupResult uint8

// What Lookup found.
const (
	Found LookupResult = iota
	UnknownService
	UnknownMethod
)

// NewArgs allocates the value that the arguments decode into, and returns
// the pointer to decode into and the value to pass to the method.
func (mt *Method) NewArgs() (decodeInto any, arg reflect.Value) {
	if mt.ArgType.Kind() == reflect.Pointer {
		v := reflect.New(mt.ArgType.Elem())
		return v.Interface(), v
	}
	v := reflect.New(mt.ArgType)
	return v.Interface(), v.Elem()
}

// NewReply allocates the reply value, with maps and slices made so that a
// method can fill them in, as net/rpc does. The slice is the same empty
// one every time (noItems): with no capacity, what a method appends goes
// to a new array.
func (mt *Method) NewReply() reflect.Value {
	v := reflect.New(mt.replyElem)
	switch mt.replyKind {
	case reflect.Map:
		v.Elem().Set(reflect.MakeMap(mt.replyElem))
	case reflect.Slice:
		v.Elem().Set(mt.noItems)
	}
	return v
}

// Call runs the method. arg is as NewArgs returned it.
func (mt *Method) Call(ctx context.Context, svc *Service, arg, reply reflect.Value) error {
	if mt.fast != nil {
		var a unsafe.Pointer
		if mt.argByRef {
			a = arg.Addr().UnsafePointer()
		} else {
			a = arg.UnsafePointer()
		}
		if err := mt.fast(svc.word, ctx, a, reply.UnsafePointer()); err != nil {
			return err
		}
		return nil
	}
	var out []reflect.Value
	if mt.WithCtx {
		out = mt.method.Func.Call([]reflect.Value{svc.rcvr, reflect.ValueOf(ctx), arg, reply})
	} else {
		out = mt.method.Func.Call([]reflect.Value{svc.rcvr, arg, reply})
	}
	if errv := out[0].Interface(); errv != nil {
		return errv.(error)
	}
	return nil
}
