package httpsig

import (
	"errors"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
)

func TestContentDigest(t *testing.T) {
	tests := []struct {
		body string
		algs []string
		want string
	}{
		// RFC 9421 Appendix B.2 test-request and test-response bodies. (The test-response header printed in B.2 reads
		// JlEy2b...; the body actually hashes to the value in the B.2.4 signature base, used here.)
		{`{"hello": "world"}`, []string{DigestSHA512},
			`sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:`},
		{`{"message": "good dog"}`, []string{DigestSHA512},
			`sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:`},
		{`{"hello": "world"}`, nil, `sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`},
		// draft-ietf-wimse-http-signature-06 response example.
		{"No ice cream today.\n\n", []string{DigestSHA256}, `sha-256=:UHKweBl9cpjdVqgTB65El8SexXlJYGG+XIslAYqC1mY=:`},
		{"", []string{DigestSHA256, DigestSHA512}, `sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:, ` +
			`sha-512=:z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==:`},
	}
	for _, tt := range tests {
		got, err := ContentDigest([]byte(tt.body), tt.algs...)
		if err != nil || got != tt.want {
			t.Errorf("ContentDigest(%q, %v) = %q, %v; want %q", tt.body, tt.algs, got, err, tt.want)
		}
		if err := VerifyContentDigest([]string{got}, []byte(tt.body)); err != nil {
			t.Errorf("VerifyContentDigest(own output %q): %v", got, err)
		}
	}
	if _, err := ContentDigest(nil, "md5"); !errors.Is(err, autherr.ErrUnsupportedAlg) {
		t.Errorf("ContentDigest(md5) err = %v", err)
	}
}

func TestVerifyContentDigest(t *testing.T) {
	body := []byte(`{"hello": "world"}`)
	const s256 = `sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`
	const s512 = `sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:`
	const wrong256 = `sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:`
	tests := []struct {
		name  string
		lines []string
		want  error
	}{
		{"sha-256", []string{s256}, nil},
		{"sha-512", []string{s512}, nil},
		{"both", []string{s256 + ", " + s512}, nil},
		{"two lines", []string{s512, s256}, nil},
		{"unknown ignored", []string{`md5=:AAAA:, ` + s256 + `, foo=:AAAA:`}, nil},
		{"params ignored", []string{s256 + `;x=1`}, nil},
		{"absent", nil, autherr.ErrMalformed},
		{"mismatch", []string{wrong256}, autherr.ErrMismatch},
		{"one of two mismatches", []string{wrong256 + ", " + s512}, autherr.ErrMismatch},
		{"truncated digest", []string{`sha-256=:X48E9qOokqqrvdts8nOJ:`}, autherr.ErrMismatch},
		{"only unknown", []string{`md5=:AAAA:, crc32c=:AAAA:`}, autherr.ErrUnsupportedAlg},
		{"empty", []string{``}, autherr.ErrUnsupportedAlg},
		{"not bytes", []string{`sha-256="X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="`}, autherr.ErrMalformed},
		{"inner list", []string{`sha-256=(:AAAA:)`}, autherr.ErrMalformed},
		{"duplicate", []string{s256, wrong256}, autherr.ErrMalformed},
		{"unparsable", []string{`sha-256=:X48E`}, autherr.ErrMalformed},
		{"uppercase key", []string{`SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`}, autherr.ErrMalformed},
		{"too long", []string{s256 + ", x=:" + strings.Repeat("A", MaxFieldBytes) + ":"}, autherr.ErrTooLarge},
		{"too many", []string{"a=:AA==:, b=:AA==:, c=:AA==:, d=:AA==:, " +
			"e=:AA==:, f=:AA==:, g=:AA==:, h=:AA==:, " + s256}, autherr.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyContentDigest(tt.lines, body)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || autherr.Of(err) != tt.want {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}
