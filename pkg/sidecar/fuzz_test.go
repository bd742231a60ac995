package sidecar

import (
	"os"
	"testing"
)

// FuzzParse: any bytes give a config or an error, never a panic.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("testdata/valid.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("egress:\n  routes:\n    - {name: a, host: b, upstream: 'http://c', modes: [wpt], allowCleartextProofs: true}\n"))
	f.Add([]byte("ingress: [1, 2"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
	})
}
