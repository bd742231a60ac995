package httpsig

import (
	"fmt"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// parseSignatureInputs parses a combined Signature-Input value into its signatures. It is parseSFDictionary
// followed by the checks of each member ParseSignatureInput makes, in one pass that builds the Components and
// Params directly instead of the parser's item and parameter lists first: a receiver parses this field on every
// request. It steps exactly as parseSFDictionary does, so it reports the same syntax error at the same offset, and
// it keeps each member's first fault until the whole value has parsed, so faults come in the same order too.
// FuzzParseSignatureInput holds it to parseSFDictionary plus signatureInputFromMember, the two-step reference.
func parseSignatureInputs(s string) ([]SignatureInput, error) {
	type entry struct {
		key string
		in  SignatureInput
		err error // the member's first fault, reported once the whole value has parsed
	}
	p := &sfParser{s: s}
	p.skipSP()
	var buf [2]entry
	entries := buf[:0]
	var store *inputStore // the first member's, when it fits
	dup := false
	for !p.eof() {
		key, err := p.parseKey()
		if err != nil {
			return nil, sfError(wire.HeaderSignatureInput, err)
		}
		e := entry{key: key}
		switch {
		case !p.eof() && p.peek() == '=':
			p.i++
			if !p.eof() && p.peek() == '(' {
				e.in, e.err, err = p.parseSignatureInputList(key, &store)
			} else {
				_, err = p.parseItem()
				e.err = badInput(key, "value is not an inner list")
			}
		default: // a bare key is the Boolean true, with parameters
			var pbuf [8]param
			_, err = p.collectParams(pbuf[:0])
			e.err = badInput(key, "value is not an inner list")
		}
		if err != nil {
			return nil, sfError(wire.HeaderSignatureInput, err)
		}
		var replaced bool
		if entries, replaced, err = putMember(entries, e, key, func(e *entry) string { return e.key }); err != nil {
			return nil, sfError(wire.HeaderSignatureInput, err)
		}
		dup = dup || replaced
		if err := p.nextMember(); err != nil {
			return nil, sfError(wire.HeaderSignatureInput, err)
		}
	}
	if dup {
		return nil, fmt.Errorf("httpsig: %w: Signature-Input repeats a label", autherr.ErrMalformed)
	}
	if len(entries) > MaxSignatures {
		return nil, fmt.Errorf("httpsig: %w: Signature-Input has %d signatures, limit %d",
			autherr.ErrTooLarge, len(entries), MaxSignatures)
	}
	var out []SignatureInput
	if len(entries) == 1 && store != nil && !store.usedIn {
		out = store.in[:]
	} else {
		out = make([]SignatureInput, len(entries))
	}
	for i, e := range entries {
		if e.err != nil {
			return nil, e.err
		}
		out[i] = e.in
	}
	return out, nil
}

// inputStore is room for one parsed signature input of up to 8 components and 6 parameters, a WIMSE signature's
// size: its components, parameters and the one-element result slice in one allocation.
type inputStore struct {
	in     [1]SignatureInput
	comps  [8]Component
	params [6]Param
	// usedIn: comps and params went to an input that was then replaced (a repeated label), so in is not the one
	// to hand out either.
	usedIn bool
}

// parseSignatureInputList parses the Inner List of the member labelled key, at '(', as parseInnerList does. fault
// is the member's first fault as signatureInputFromMember would find it; err is a syntax error. The first input
// that fits goes into a new *store; later ones are allocated apart.
func (p *sfParser) parseSignatureInputList(key string, store **inputStore) (in SignatureInput, fault, err error) {
	p.i++ // '('
	var cbuf [8]Component
	comps := cbuf[:0]
	var itemFault error
	n := 0
	for !p.eof() {
		p.skipSP()
		if p.eof() {
			break
		}
		if p.peek() == ')' {
			p.i++
			var pbuf [8]param
			ps, err := p.collectParams(pbuf[:0])
			if err != nil {
				return SignatureInput{}, nil, err
			}
			switch {
			case n > MaxComponents:
				fault = fmt.Errorf("httpsig: %w: Signature-Input %q covers %d components, limit %d",
					autherr.ErrTooLarge, key, n, MaxComponents)
			case itemFault != nil:
				fault = itemFault
			default:
				fault = checkSignatureParams(key, ps)
			}
			if fault != nil {
				return SignatureInput{}, fault, nil
			}
			if *store == nil && len(comps) <= len(inputStore{}.comps) && len(ps) <= len(inputStore{}.params) {
				st := new(inputStore)
				*store = st
				in = SignatureInput{Label: key, Components: st.comps[:len(comps):len(comps)]}
				if len(ps) > 0 { // as fromParams: no parameters is a nil slice
					in.Params = appendFromParams(st.params[:0:len(ps)], ps)
				}
			} else {
				if *store != nil {
					(*store).usedIn = true
				}
				in = SignatureInput{Label: key, Components: make([]Component, len(comps)), Params: fromParams(ps)}
			}
			copy(in.Components, comps)
			return in, nil, nil
		}
		if n == sfMaxInnerItems {
			return SignatureInput{}, nil, errSFTooLarge
		}
		v, err := p.parseBareItem()
		if err != nil {
			return SignatureInput{}, nil, err
		}
		var pbuf [4]param
		ps, err := p.collectParams(pbuf[:0])
		if err != nil {
			return SignatureInput{}, nil, err
		}
		n++
		if itemFault == nil {
			switch {
			case v.kind != sfString:
				itemFault = badInput(key, "component identifier is not a string")
			case !validComponentName(v.str):
				itemFault = badInput(key, fmt.Sprintf("invalid component name %q", v.str))
			case v.str == "@signature-params":
				itemFault = badInput(key, "@signature-params must not be a covered component")
			case n <= MaxComponents:
				comps = append(comps, Component{Name: v.str, Params: fromParams(ps)})
			}
		}
		if p.eof() || (p.peek() != ' ' && p.peek() != ')') {
			return SignatureInput{}, nil, p.errf("expected ' ' or ')' in inner list")
		}
	}
	return SignatureInput{}, nil, p.errf("unterminated inner list")
}

// checkSignatureParams checks the types RFC 9421 gives the signature parameters it defines.
func checkSignatureParams(key string, ps params) error {
	for _, p := range ps {
		switch p.key {
		case "created", "expires":
			if p.val.kind != sfInteger {
				return badInput(key, p.key+" is not an integer")
			}
		case "nonce", "alg", "keyid", "tag":
			if p.val.kind != sfString {
				return badInput(key, p.key+" is not a string")
			}
		}
	}
	return nil
}

// badInput is a malformed Signature-Input member.
func badInput(key, what string) error {
	return fmt.Errorf("httpsig: %w: Signature-Input %q: %s", autherr.ErrMalformed, key, what)
}
