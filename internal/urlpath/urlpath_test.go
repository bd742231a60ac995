package urlpath

import "testing"

func TestWithoutParams(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b": "/a/b", "/orders/..;/admin": "/orders/../admin", "/a;v=1/b;x": "/a/b", "/;x/": "//", "": "",
	} {
		if got := WithoutParams(in); got != want {
			t.Errorf("WithoutParams(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHasDotSegment(t *testing.T) {
	for in, want := range map[string]bool{
		"/a/b": false, "/a/..b": false, "/a/.well-known": false, "/a/../b": true, "/a/.": true, "..": true,
		"/a/..;/b": true, "/a/.;x/b": true, "/a;../b": false,
	} {
		if got := HasDotSegment(in); got != want {
			t.Errorf("HasDotSegment(%q) = %v, want %v", in, got, want)
		}
	}
}

func BenchmarkWithoutParamsNoParams(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = WithoutParams("/api/v1/orders/12345")
	}
}
