package audit

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    string
		max  int
		want string
	}{
		{"short", "/mcp", 20, "/mcp"},
		{"exactly max", strings.Repeat("a", 20), 20, strings.Repeat("a", 20)},
		{"one over", strings.Repeat("a", 21), 20, "aaaaaa" + Truncated},
		{"escapes count as written", strings.Repeat("<", 3), 20, "<<<"},
		{"escapes over", strings.Repeat("<", 4), 20, "<" + Truncated},
		{"invalid UTF-8 is \\ufffd", "ab\xed\xed\xed\xed", 20, "ab" + Truncated},
		{"multibyte kept whole", "aaaaa\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9", 20, "aaaaa" + Truncated},
		{"U+2028 escaped", "\u2028\u2028\u2028\u2028", 20, "\u2028" + Truncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Clip(tc.s, tc.max); got != tc.want {
				t.Fatalf("Clip(%q, %d) = %q, want %q", tc.s, tc.max, got, tc.want)
			}
		})
	}
}

// FuzzClip holds Clip to encoding/json: what it returns takes at most max bytes as a JSON string, it is s itself
// when s fits, and otherwise the longest prefix of s that fits beside Truncated.
func FuzzClip(f *testing.F) {
	f.Add("/mcp", 20)
	f.Add("<a&b>\"\\\n\t\x00\x7f\b\f", 16)
	f.Add("caf\xc3\xa9 \xe2\x80\xa8 \xe2\x80", 17)
	f.Add(strings.Repeat("\xed", 100), 40)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < len(Truncated)+1 || max > 4096 {
			return
		}
		jsonLen := func(s string) int {
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			return len(b) - 2
		}
		got := Clip(s, max)
		if n := jsonLen(got); n > max {
			t.Fatalf("Clip(%q, %d) = %q takes %d bytes", s, max, got, n)
		}
		if jsonLen(s) <= max {
			if got != s {
				t.Fatalf("Clip(%q, %d) = %q, want s, which fits", s, max, got)
			}
			return
		}
		prefix, ok := strings.CutSuffix(got, Truncated)
		if !ok || !strings.HasPrefix(s, prefix) {
			t.Fatalf("Clip(%q, %d) = %q, want a prefix of s and %q", s, max, got, Truncated)
		}
		for i := len(prefix) + 1; i <= len(s) && i <= len(prefix)+4; i++ {
			if jsonLen(s[:i]) <= max-len(Truncated) && jsonLen(s[:i]) > jsonLen(prefix) {
				t.Fatalf("Clip(%q, %d) = %q, but the longer prefix %q fits", s, max, got, s[:i])
			}
		}
	})
}
