package xds

import (
	"fmt"
	"hash/maphash"
	"testing"
)

func TestCowMapCopiesOnWrite(t *testing.T) {
	m0 := newCowMap[string, int](stringHasher(maphash.MakeSeed()))
	e := m0.edit()
	for i := range 1000 {
		e.set(fmt.Sprint(i), i)
	}
	m1 := e.done()
	e = m1.edit()
	e.set("0", -1)
	e.set("new", 7)
	e.del("1")
	e.del("missing")
	m2 := e.done()

	if m0.len() != 0 || m1.len() != 1000 || m2.len() != 1000 {
		t.Fatalf("len: %d %d %d", m0.len(), m1.len(), m2.len())
	}
	if v, _ := m1.get("0"); v != 0 {
		t.Errorf("m1 changed by a later edit: %d", v)
	}
	if _, ok := m1.get("1"); !ok {
		t.Error("m1 lost a key deleted from m2")
	}
	if v, _ := m2.get("0"); v != -1 {
		t.Errorf("m2[0] = %d", v)
	}
	if _, ok := m2.get("1"); ok {
		t.Error("m2 kept a deleted key")
	}
	n := 0
	m2.each(func(string, int) { n++ })
	if n != 1000 {
		t.Errorf("each visited %d", n)
	}
}
