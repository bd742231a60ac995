package wpt

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	ijose "github.com/agentauth/agentauth/internal/jose"
	"github.com/agentauth/agentauth/pkg/autherr"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-json-experiment/json/jsontext"
)

// WITs and WPTs are compact JWSs handled by go-jose: it parses them, enforces the alg allow-list and verifies the
// signature. parseCompact adds what neither token type uses and go-jose would honour or tolerate, so that one
// token has exactly one reading: crit and b64 (go-jose applies RFC 7797 unencoded payloads whenever b64 is false),
// duplicate or invalid-UTF-8 header members (go-jose keeps the last duplicate), and base64url with non-zero unused
// trailing bits or with CR or LF inside (Go's decoder tolerates both, so one signature would travel under several
// spellings).

var b64Strict = base64.RawURLEncoding.Strict()

// parseCompact parses token, a WIT or WPT as what says, as a compact JWS whose alg is one of algs, and returns it
// with its protected header. An alg outside algs is autherr.ErrUnsupportedAlg (want names what algs are, for the message);
// anything else that is not a well-formed compact JWS is autherr.ErrMalformed. The signature is not checked here.
func parseCompact(what, token string, algs []jose.SignatureAlgorithm, want string) (*jose.JSONWebSignature, *jose.Header, error) {
	if strings.ContainsAny(token, "\r\n") {
		return nil, nil, fmt.Errorf("wpt: %w: %s contains a line break, which base64url does not have", autherr.ErrMalformed, what)
	}
	if seg, _, ok := strings.Cut(token, "."); ok {
		raw, err := b64Strict.DecodeString(seg)
		if err != nil {
			return nil, nil, fmt.Errorf("wpt: %w: %s header is not canonical base64url: %v", autherr.ErrMalformed, what, err)
		}
		if !jsontext.Value(raw).IsValid() {
			return nil, nil, fmt.Errorf("wpt: %w: %s header is not valid JSON with unique member names", autherr.ErrMalformed, what)
		}
	}
	jws, err := jose.ParseSignedCompact(token, algs)
	if err != nil {
		var ua *jose.ErrUnexpectedSignatureAlgorithm
		switch {
		case errors.As(err, &ua) && !ijose.Supported(string(ua.Got)):
			return nil, nil, fmt.Errorf("wpt: %w: %s alg %q is not an accepted asymmetric algorithm", autherr.ErrUnsupportedAlg, what, ua.Got)
		case errors.As(err, &ua):
			return nil, nil, fmt.Errorf("wpt: %w: %s alg %q is not %s (%s)", autherr.ErrUnsupportedAlg, what, ua.Got, want, algList(algs))
		}
		return nil, nil, fmt.Errorf("wpt: %w: %s is not a compact JWS: %v", autherr.ErrMalformed, what, err)
	}
	// A compact JWS has exactly one signature and only a protected header.
	hdr := &jws.Signatures[0].Protected
	if _, ok := hdr.ExtraHeaders["crit"]; ok {
		return nil, nil, fmt.Errorf("wpt: %w: %s header has crit, which WITs and WPTs do not use", autherr.ErrMalformed, what)
	}
	if _, ok := hdr.ExtraHeaders["b64"]; ok {
		return nil, nil, fmt.Errorf("wpt: %w: %s header has b64, which WITs and WPTs do not use", autherr.ErrMalformed, what)
	}
	payload, sig, _ := strings.Cut(token[strings.IndexByte(token, '.')+1:], ".")
	if !canonicalTail(payload) || !canonicalTail(sig) {
		return nil, nil, fmt.Errorf("wpt: %w: %s is not canonical base64url (non-zero trailing bits)", autherr.ErrMalformed, what)
	}
	return jws, hdr, nil
}

// canonicalTail reports whether the final partial quantum of the unpadded base64url seg has its unused bits zero.
// go-jose has already decoded seg, so the rest of it is known to be valid.
func canonicalTail(seg string) bool {
	var out [3]byte
	_, err := b64Strict.Decode(out[:], []byte(seg[len(seg)-len(seg)%4:]))
	return err == nil
}

// headerTyp returns the typ of a protected header, or "" when it is absent or not a string.
func headerTyp(hdr *jose.Header) string {
	typ, _ := hdr.ExtraHeaders[jose.HeaderType].(string)
	return typ
}

func algList(algs []jose.SignatureAlgorithm) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}
