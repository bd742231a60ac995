package wpt

import (
	"net/http"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/autherr/autherrtest"
	"github.com/agentauth/agentauth/pkg/wire"
)

func TestExtractHeaders(t *testing.T) {
	const tok = "eyJh.eyJz.c2ln"
	tests := []struct {
		name string
		h    http.Header
		want error
	}{
		{"both", http.Header{wire.HeaderWIT: {tok}, wire.HeaderWPT: {tok}}, nil},
		{"surrounding spaces", http.Header{wire.HeaderWIT: {" " + tok + "\t"}, wire.HeaderWPT: {tok}}, nil},
		{"no WIT", http.Header{wire.HeaderWPT: {tok}}, autherr.ErrMissing},
		{"no WPT", http.Header{wire.HeaderWIT: {tok}}, autherr.ErrMissing},
		{"neither", http.Header{}, autherr.ErrMissing},
		{"two WPT", http.Header{wire.HeaderWIT: {tok}, wire.HeaderWPT: {tok, tok}}, autherr.ErrMalformed},
		{"comma-joined", http.Header{wire.HeaderWIT: {tok}, wire.HeaderWPT: {tok + "," + tok}}, autherr.ErrMalformed},
		{"empty", http.Header{wire.HeaderWIT: {""}, wire.HeaderWPT: {tok}}, autherr.ErrMalformed},
		{"two parts", http.Header{wire.HeaderWIT: {"a.b"}, wire.HeaderWPT: {tok}}, autherr.ErrMalformed},
		{"JWE-like five parts", http.Header{wire.HeaderWIT: {"a.b.c.d.e"}, wire.HeaderWPT: {tok}}, autherr.ErrMalformed},
		{"Bearer prefix", http.Header{wire.HeaderWIT: {"Bearer " + tok}, wire.HeaderWPT: {tok}}, autherr.ErrMalformed},
		{"padding", http.Header{wire.HeaderWIT: {"eyJh.eyJz.c2ln=="}, wire.HeaderWPT: {tok}}, autherr.ErrMalformed},
		{"oversize", http.Header{wire.HeaderWIT: {tok}, wire.HeaderWPT: {strings.Repeat("a", MaxTokenSize) + ".b.c"}}, autherr.ErrTooLarge},
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
