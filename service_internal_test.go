package pulse

import (
	"reflect"
	"testing"
)

// Fills has methods with reply types that newReply makes: a slice and a
// map, which a method must be able to fill in without making them.
type Fills struct{}

func (Fills) List(n int, reply *[]int) error {
	for i := range n {
		*reply = append(*reply, i)
	}
	return nil
}

func (Fills) Set(n int, reply *map[int]bool) error {
	for i := range n {
		(*reply)[i] = true
	}
	return nil
}

func (Fills) Leave(n int, reply *[]int) error { return nil }

func TestNewReplyMakesSlicesAndMaps(t *testing.T) {
	r := newRegistry()
	if err := r.register(Fills{}, "", false); err != nil {
		t.Fatal(err)
	}
	_, leave, _ := r.lookup([]byte("Fills.Leave"))
	v := leave.newReply().Interface().(*[]int)
	if *v == nil || len(*v) != 0 {
		t.Fatalf("slice reply = %#v, want a non-nil empty slice (encoded as [] rather than null)", *v)
	}

	svc, list, _ := r.lookup([]byte("Fills.List"))
	a, b := list.newReply(), list.newReply()
	if err := list.call(nil, svc, reflect.ValueOf(3), a); err != nil {
		t.Fatal(err)
	}
	if err := list.call(nil, svc, reflect.ValueOf(2), b); err != nil {
		t.Fatal(err)
	}
	if got := *a.Interface().(*[]int); !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Fatalf("first reply = %v", got)
	}
	if got := *b.Interface().(*[]int); !reflect.DeepEqual(got, []int{0, 1}) {
		t.Fatalf("second reply = %v: replies share an array", got)
	}

	_, set, _ := r.lookup([]byte("Fills.Set"))
	m1, m2 := set.newReply(), set.newReply()
	if err := set.call(nil, svc, reflect.ValueOf(2), m1); err != nil {
		t.Fatal(err)
	}
	if got := *m2.Interface().(*map[int]bool); got == nil || len(got) != 0 {
		t.Fatalf("second map reply = %v: want a new empty map", got)
	}
}

func TestLookup(t *testing.T) {
	r := newRegistry()
	if _, _, kind := r.lookup([]byte("Fills.List")); kind != kindUnknownService {
		t.Fatalf("empty registry: kind %v, want unknown service", kind)
	}
	if err := r.register(Fills{}, "", false); err != nil {
		t.Fatal(err)
	}
	if err := r.register(Fills{}, "Other", true); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		service string
		kind    errorKind
	}{
		{"Fills.List", "Fills", kindNone},
		{"Other.Set", "Other", kindNone},
		{"Fills.Nope", "Fills", kindUnknownMethod},
		{"Nope.List", "", kindUnknownService},
		{"FillsList", "", kindUnknownService},
		{"Fills.List.", "", kindUnknownService},
		{"", "", kindUnknownService},
	} {
		svc, mt, kind := r.lookup([]byte(tt.name))
		if kind != tt.kind {
			t.Errorf("lookup(%q): kind %v, want %v", tt.name, kind, tt.kind)
			continue
		}
		if tt.service != "" && (svc == nil || svc.name != tt.service) {
			t.Errorf("lookup(%q): service %v, want %s", tt.name, svc, tt.service)
		}
		if kind == kindNone && svc.name+"."+mt.method.Name != tt.name {
			t.Errorf("lookup(%q) found %s.%s", tt.name, svc.name, mt.method.Name)
		}
	}
}
