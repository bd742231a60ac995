package wire

import "testing"

func TestParseModes(t *testing.T) {
	m, err := ParseModes("wpt", " MTLS ")
	if err != nil || m != ModeWPT|ModeMTLS || m.String() != "wpt+mtls" {
		t.Fatalf("ParseModes = %v (%v), %v", m, uint8(m), err)
	}
	if _, err := ParseModes("bearer"); err == nil {
		t.Fatal("unknown mode accepted")
	}
	if Mode(0).String() != "none" || !ModePassthrough.Has(ModePassthrough) || ModeWPT.Has(0) {
		t.Fatal("Mode basics")
	}
}

// ParseMode reads a configuration name exactly as written: the sidecar's configuration check relies on it.
func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Mode
		ok   bool
	}{
		{"wpt", ModeWPT, true}, {"httpsig", ModeHTTPSig, true}, {"mtls", ModeMTLS, true},
		{"passthrough", ModePassthrough, true}, {"MTLS", 0, false}, {" wpt", 0, false}, {"", 0, false},
		{"wpt+mtls", 0, false},
	} {
		m, err := ParseMode(tc.name)
		if (err == nil) != tc.ok || m != tc.want {
			t.Errorf("ParseMode(%q) = %v, %v", tc.name, m, err)
		}
		if tc.ok && m.String() != tc.name {
			t.Errorf("%v.String() = %q, want %q", m, m.String(), tc.name)
		}
	}
}
