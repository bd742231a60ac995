package wpt

import (
	"fmt"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// proofClaims are the WPT claims VerifyRequest checks. decode fills them: by decodeFlat for the flat shape every
// WPT of this project has, else by the strict JSON decoder (unmarshalClaims into wptIn), which holds the answer for
// anything else. FuzzProofClaims holds the two to the same claims wherever decodeFlat decides.
type proofClaims struct {
	aud                    string // the one audience (aud as a string, or an array of exactly one)
	exp, nbf, iat          int64
	hasExp, hasNbf, hasIat bool
	jti, wth               string
	ath, tth               string
	hasAth, hasTth         bool
	oth                    map[string]string
}

// decode reads a WPT payload: the strict decoder's answer, from decodeFlat when it can tell it alone.
func (c *proofClaims) decode(payload []byte) error {
	if c.decodeFlat(payload) {
		return nil
	}
	return c.decodeJSON(payload)
}

// decodeJSON decodes with unmarshalClaims (strict: case-sensitive names, no duplicates, valid UTF-8) and reads aud.
func (c *proofClaims) decodeJSON(payload []byte) error {
	var in wptIn
	if err := unmarshalClaims("WPT", payload, &in); err != nil {
		return err
	}
	aud, err := audienceOf(in.Aud)
	if err != nil {
		return err
	}
	*c = proofClaims{aud: aud, jti: in.Jti, wth: in.Wth, oth: in.Oth}
	if in.Exp != nil {
		c.exp, c.hasExp = int64(*in.Exp), true
	}
	if in.Nbf != nil {
		c.nbf, c.hasNbf = int64(*in.Nbf), true
	}
	if in.Iat != nil {
		c.iat, c.hasIat = int64(*in.Iat), true
	}
	if in.Ath != nil {
		c.ath, c.hasAth = *in.Ath, true
	}
	if in.Tth != nil {
		c.tth, c.hasTth = *in.Tth, true
	}
	return nil
}

// audienceOf requires exactly one aud value. A proof naming several audiences could be replayed at each of them,
// whose replay caches do not know of one another.
func audienceOf(raw jsontext.Value) (string, error) {
	var aud string
	switch raw.Kind() {
	case '"':
		if err := json.Unmarshal(raw, &aud); err != nil {
			return "", fmt.Errorf("wpt: %w: WPT aud: %v", autherr.ErrMalformed, err)
		}
	case '[':
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil || len(list) != 1 {
			return "", fmt.Errorf("wpt: %w: WPT aud must name exactly one audience", autherr.ErrMalformed)
		}
		aud = list[0]
	default:
		return "", fmt.Errorf("wpt: %w: WPT has no aud", autherr.ErrMalformed)
	}
	return aud, nil
}

// decodeFlat decodes payload when it is a JSON object whose members are only aud, exp, nbf, iat, jti, wth, ath and
// tth, each at most once, with names and strings of printable ASCII without escapes and exp, nbf and iat integers
// of at most 15 digits, and aud present as a string. On that subset the strict decoder's answer is plain to read;
// for anything else (escapes, other members or types, duplicates, arrays, oth, a missing aud...) decodeFlat
// returns false having decided nothing, and the strict decoder runs.
func (c *proofClaims) decodeFlat(p []byte) bool {
	*c = proofClaims{}
	var seen uint8
	i := skipWS(p, 0)
	if i >= len(p) || p[i] != '{' {
		return false
	}
	i = skipWS(p, i+1)
	if i < len(p) && p[i] == '}' {
		return false // no aud
	}
	for {
		name, next, ok := flatString(p, i)
		if !ok {
			return false
		}
		i = skipWS(p, next)
		if i >= len(p) || p[i] != ':' {
			return false
		}
		i = skipWS(p, i+1)
		var bit uint8
		switch string(name) {
		case "aud", "jti", "wth", "ath", "tth":
			val, next, ok := flatString(p, i)
			if !ok {
				return false
			}
			i = next
			switch string(name) {
			case "aud":
				bit, c.aud = 1<<0, string(val)
			case "jti":
				bit, c.jti = 1<<1, string(val)
			case "wth":
				bit, c.wth = 1<<2, string(val)
			case "ath":
				bit, c.ath, c.hasAth = 1<<3, string(val), true
			default:
				bit, c.tth, c.hasTth = 1<<4, string(val), true
			}
		case "exp", "nbf", "iat":
			n, next, ok := flatInt(p, i)
			if !ok {
				return false
			}
			i = next
			switch string(name) {
			case "exp":
				bit, c.exp, c.hasExp = 1<<5, n, true
			case "nbf":
				bit, c.nbf, c.hasNbf = 1<<6, n, true
			default:
				bit, c.iat, c.hasIat = 1<<7, n, true
			}
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		i = skipWS(p, i)
		if i >= len(p) {
			return false
		}
		if p[i] == '}' {
			break
		}
		if p[i] != ',' {
			return false
		}
		i = skipWS(p, i+1)
	}
	return seen&1 != 0 && skipWS(p, i+1) == len(p)
}

// skipWS skips JSON whitespace from i.
func skipWS(p []byte, i int) int {
	for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}

// flatString reads a JSON string at i of printable ASCII without escapes, returning its content and the index after
// the closing quote.
func flatString(p []byte, i int) ([]byte, int, bool) {
	if i >= len(p) || p[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(p); j++ {
		switch c := p[j]; {
		case c == '"':
			return p[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c > 0x7e:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// flatInt reads a JSON integer at i of at most 15 digits (exactly representable as the float64 go-jose's
// NumericDate parses it through), not followed by a fraction or exponent.
func flatInt(p []byte, i int) (int64, int, bool) {
	neg := i < len(p) && p[i] == '-'
	if neg {
		i++
	}
	start := i
	var n int64
	for i < len(p) && p[i] >= '0' && p[i] <= '9' {
		n = n*10 + int64(p[i]-'0')
		i++
	}
	switch digits := i - start; {
	case digits == 0 || digits > 15, digits > 1 && p[start] == '0':
		return 0, 0, false
	}
	if i < len(p) && (p[i] == '.' || p[i] == 'e' || p[i] == 'E') {
		return 0, 0, false
	}
	if neg {
		n = -n
	}
	return n, i, true
}
