package wpt

import (
	"net/http"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr/autherrtest"
)

func TestExtractHeaders(t *testing.T) {
	const tok = "eyJh.eyJz.c2ln"
	tests := []struct {
		name string
		h    http.Header
		want error
	}{
		{"both", http.Header{HeaderWIT: {tok}, HeaderWPT: {tok}}, nil},
		{"surrounding spaces", http.Header{HeaderWIT: {" " + tok + "\t"}, HeaderWPT: {tok}}, nil},
		{"no WIT", http.Header{HeaderWPT: {tok}}, ErrMissing},
		{"no WPT", http.Header{HeaderWIT: {tok}}, ErrMissing},
		{"neither", http.Header{}, ErrMissing},
		{"two WPT", http.Header{HeaderWIT: {tok}, HeaderWPT: {tok, tok}}, ErrMalformed},
		{"comma-joined", http.Header{HeaderWIT: {tok}, HeaderWPT: {tok + "," + tok}}, ErrMalformed},
		{"empty", http.Header{HeaderWIT: {""}, HeaderWPT: {tok}}, ErrMalformed},
		{"two parts", http.Header{HeaderWIT: {"a.b"}, HeaderWPT: {tok}}, ErrMalformed},
		{"JWE-like five parts", http.Header{HeaderWIT: {"a.b.c.d.e"}, HeaderWPT: {tok}}, ErrMalformed},
		{"Bearer prefix", http.Header{HeaderWIT: {"Bearer " + tok}, HeaderWPT: {tok}}, ErrMalformed},
		{"padding", http.Header{HeaderWIT: {"eyJh.eyJz.c2ln=="}, HeaderWPT: {tok}}, ErrMalformed},
		{"oversize", http.Header{HeaderWIT: {tok}, HeaderWPT: {strings.Repeat("a", MaxTokenSize) + ".b.c"}}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wit, wpt, err := ExtractHeaders(tt.h)
			autherrtest.Check(t, err, tt.want)
			if tt.want == nil && (wit != tok || wpt != tok) {
				t.Fatalf("got %q, %q", wit, wpt)
			}
		})
	}
}
