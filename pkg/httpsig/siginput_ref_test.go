package httpsig

import (
	"fmt"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// referenceParseSignatureInput is how ParseSignatureInput parsed a combined value before parseSignatureInputs:
// the generic Dictionary parser, then each member checked and converted. FuzzParseSignatureInput holds
// parseSignatureInputs to it, error for error.
func referenceParseSignatureInput(value string) ([]SignatureInput, error) {
	d, err := parseSFDictionary(value)
	if err != nil {
		return nil, sfError(wire.HeaderSignatureInput, err)
	}
	if d.dup {
		return nil, fmt.Errorf("httpsig: %w: Signature-Input repeats a label", autherr.ErrMalformed)
	}
	if len(d.members) > MaxSignatures {
		return nil, fmt.Errorf("httpsig: %w: Signature-Input has %d signatures, limit %d",
			autherr.ErrTooLarge, len(d.members), MaxSignatures)
	}
	out := make([]SignatureInput, 0, len(d.members))
	for _, m := range d.members {
		in, err := signatureInputFromMember(m)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

func signatureInputFromMember(m member) (SignatureInput, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("httpsig: %w: Signature-Input %q: %s", autherr.ErrMalformed, m.key, fmt.Sprintf(format, args...))
	}
	if !m.inner {
		return SignatureInput{}, bad("value is not an inner list")
	}
	if len(m.items) > MaxComponents {
		return SignatureInput{}, fmt.Errorf("httpsig: %w: Signature-Input %q covers %d components, limit %d",
			autherr.ErrTooLarge, m.key, len(m.items), MaxComponents)
	}
	in := SignatureInput{Label: m.key, Components: make([]Component, 0, len(m.items))}
	for _, it := range m.items {
		if it.val.kind != sfString {
			return SignatureInput{}, bad("component identifier is not a string")
		}
		if !validComponentName(it.val.str) {
			return SignatureInput{}, bad("invalid component name %q", it.val.str)
		}
		if it.val.str == "@signature-params" {
			return SignatureInput{}, bad("@signature-params must not be a covered component")
		}
		in.Components = append(in.Components, Component{Name: it.val.str, Params: fromParams(it.params)})
	}
	for _, p := range m.params {
		switch p.key {
		case "created", "expires":
			if p.val.kind != sfInteger {
				return SignatureInput{}, bad("%s is not an integer", p.key)
			}
		case "nonce", "alg", "keyid", "tag":
			if p.val.kind != sfString {
				return SignatureInput{}, bad("%s is not a string", p.key)
			}
		}
	}
	in.Params = fromParams(m.params)
	return in, nil
}
