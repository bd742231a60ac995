package wpt

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// MaxTokenSize is the largest WIT or WPT accepted, in bytes.
const MaxTokenSize = 8 << 10

// ExtractHeaders returns the single Workload-Identity-Token and Workload-Proof-Token values of h. A missing header
// is autherr.ErrMissing; a repeated header, a comma-joined list or a value that is not compact-JWS characters is
// autherr.ErrMalformed; a value over MaxTokenSize is autherr.ErrTooLarge.
func ExtractHeaders(h http.Header) (wit, wpt string, err error) {
	if wit, err = oneToken(h, wire.HeaderWIT); err != nil {
		return "", "", err
	}
	if wpt, err = oneToken(h, wire.HeaderWPT); err != nil {
		return "", "", err
	}
	return wit, wpt, nil
}

func oneToken(h http.Header, name string) (string, error) {
	vals := h.Values(name)
	switch {
	case len(vals) == 0:
		return "", fmt.Errorf("wpt: %w: no %s header", autherr.ErrMissing, name)
	case len(vals) > 1:
		return "", fmt.Errorf("wpt: %w: %d %s headers, want exactly one", autherr.ErrMalformed, len(vals), name)
	}
	v := strings.Trim(vals[0], " \t")
	if len(v) > MaxTokenSize {
		return "", fmt.Errorf("wpt: %w: %s is %d bytes, over %d", autherr.ErrTooLarge, name, len(v), MaxTokenSize)
	}
	if v == "" {
		return "", fmt.Errorf("wpt: %w: empty %s header", autherr.ErrMalformed, name)
	}
	dots := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '.':
			dots++
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return "", fmt.Errorf("wpt: %w: %s holds %q at offset %d; want one compact JWT", autherr.ErrMalformed, name, c, i)
		}
	}
	if dots != 2 {
		return "", fmt.Errorf("wpt: %w: %s has %d dots; want one compact JWT", autherr.ErrMalformed, name, dots)
	}
	return v, nil
}
