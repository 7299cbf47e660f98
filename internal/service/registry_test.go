package service

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
	r := NewRegistry()
	if err := r.Register(Fills{}, "", false); err != nil {
		t.Fatal(err)
	}
	_, leave, _ := r.Lookup([]byte("Fills.Leave"))
	v := leave.NewReply().Interface().(*[]int)
	if *v == nil || len(*v) != 0 {
		t.Fatalf("slice reply = %#v, want a non-nil empty slice (encoded as [] rather than null)", *v)
	}

	svc, list, _ := r.Lookup([]byte("Fills.List"))
	a, b := list.NewReply(), list.NewReply()
	if err := list.Call(nil, svc, reflect.ValueOf(3), a); err != nil {
		t.Fatal(err)
	}
	if err := list.Call(nil, svc, reflect.ValueOf(2), b); err != nil {
		t.Fatal(err)
	}
	if got := *a.Interface().(*[]int); !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Fatalf("first reply = %v", got)
	}
	if got := *b.Interface().(*[]int); !reflect.DeepEqual(got, []int{0, 1}) {
		t.Fatalf("second reply = %v: replies share an array", got)
	}

	_, set, _ := r.Lookup([]byte("Fills.Set"))
	m1, m2 := set.NewReply(), set.NewReply()
	if err := set.Call(nil, svc, reflect.ValueOf(2), m1); err != nil {
		t.Fatal(err)
	}
	if got := *m2.Interface().(*map[int]bool); got == nil || len(got) != 0 {
		t.Fatalf("second map reply = %v: want a new empty map", got)
	}
}

func TestLookup(t *testing.T) {
	r := NewRegistry()
	if _, _, kind := r.Lookup([]byte("Fills.List")); kind != UnknownService {
		t.Fatalf("empty Registry: kind %v, want unknown service", kind)
	}
	if err := r.Register(Fills{}, "", false); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(Fills{}, "Other", true); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		service string
		kind    LookupResult
	}{
		{"Fills.List", "Fills", Found},
		{"Other.Set", "Other", Found},
		{"Fills.Nope", "Fills", UnknownMethod},
		{"Nope.List", "", UnknownService},
		{"FillsList", "", UnknownService},
		{"Fills.List.", "", UnknownService},
		{"", "", UnknownService},
	} {
		svc, mt, kind := r.Lookup([]byte(tt.name))
		if kind != tt.kind {
			t.Errorf("lookup(%q): kind %v, want %v", tt.name, kind, tt.kind)
			continue
		}
		if tt.service != "" && (svc == nil || svc.Name != tt.service) {
			t.Errorf("lookup(%q): service %v, want %s", tt.name, svc, tt.service)
		}
		if kind == Found && svc.Name+"."+mt.method.Name != tt.name {
			t.Errorf("lookup(%q) found %s.%s", tt.name, svc.Name, mt.method.Name)
		}
	}
}
