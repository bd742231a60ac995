package httpsig

import (
	"crypto"
	"encoding/base64"
	"fmt"
	"net/http"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

func (m Message) header() http.Header {
	if m.Response != nil {
		return m.Response.Header
	}
	return m.Request.Header
}

// Sign signs m per in with alg and key and adds the signature to the target message's Signature-Input and
// Signature fields under in.Label. It refuses a label the message already carries. Sign does not add created,
// expires or any other parameter: in is signed exactly as given.
func Sign(m Message, in *SignatureInput, alg Algorithm, key crypto.Signer) error {
	if !validKey(in.Label) {
		return fmt.Errorf("httpsig: invalid signature label %q", in.Label)
	}
	if m.Request == nil && m.Response == nil {
		return fmt.Errorf("httpsig: no message to sign")
	}
	h := m.header()
	if h == nil {
		return fmt.Errorf("httpsig: message has a nil Header")
	}
	if lines := h.Values(wire.HeaderSignatureInput); len(lines) > 0 {
		existing, err := ParseSignatureInput(lines)
		if err != nil {
			return err
		}
		for _, e := range existing {
			if e.Label == in.Label {
				return fmt.Errorf("httpsig: message already has a signature labelled %q", in.Label)
			}
		}
	}
	buf := getBaseBuf()
	base, paramsAt, err := appendSignatureBase(*buf, m, in)
	defer func() { putBaseBuf(buf, base) }()
	if err != nil {
		return err
	}
	var sigBuf [132]byte // an ECDSA P-521 r‖s; other signatures come from the key
	sig, err := alg.appendSign(sigBuf[:0], key, base)
	if err != nil {
		return err
	}
	// Both field values are built in the buffer's spare room after the base, and copied out in one string.
	fields := append(base[len(base):], in.Label...)
	fields = append(fields, '=')
	fields = append(fields, base[paramsAt:]...)
	n := len(fields)
	fields = append(fields, in.Label...)
	fields = append(fields, "=:"...)
	fields = base64.StdEncoding.AppendEncode(fields, sig)
	fields = append(fields, ':')
	both := string(fields)
	if len(h[keySignatureInput]) == 0 && len(h[keySignature]) == 0 {
		// h.Add twice, with both values in one slice; capacity-limited, so appending to one never touches the other.
		vals := []string{both[:n], both[n:]}
		h[keySignatureInput], h[keySignature] = vals[0:1:1], vals[1:2:2]
		return nil
	}
	h.Add(wire.HeaderSignatureInput, both[:n])
	h.Add(wire.HeaderSignature, both[n:])
	return nil
}

// The canonical forms of the signature fields' names, the keys of http.Header.
var (
	keySignatureInput = http.CanonicalHeaderKey(wire.HeaderSignatureInput)
	keySignature      = http.CanonicalHeaderKey(wire.HeaderSignature)
)

// Signatures parses the Signature-Input and Signature fields of h and checks that both name the same labels.
// A message with neither returns no signatures and no error.
func Signatures(h http.Header) ([]SignatureInput, map[string][]byte, error) {
	inputs, sigs, err := signatures(h)
	if err != nil || inputs == nil {
		return nil, nil, err
	}
	out := make(map[string][]byte, len(sigs))
	for _, m := range sigs {
		out[m.key] = m.val.bin
	}
	return inputs, out, nil
}

// signatures is Signatures with the signatures as parsed, in field order; signatureOf finds one by label.
func signatures(h http.Header) ([]SignatureInput, []member, error) {
	inLines, sigLines := h.Values(wire.HeaderSignatureInput), h.Values(wire.HeaderSignature)
	if len(inLines) == 0 && len(sigLines) == 0 {
		return nil, nil, nil
	}
	inputs, err := ParseSignatureInput(inLines)
	if err != nil {
		return nil, nil, err
	}
	sigs, err := parseSignature(sigLines)
	if err != nil {
		return nil, nil, err
	}
	if len(inputs) != len(sigs) {
		return nil, nil, fmt.Errorf("httpsig: %w: Signature-Input has %d labels, Signature has %d",
			autherr.ErrMalformed, len(inputs), len(sigs))
	}
	for _, in := range inputs {
		if _, ok := signatureOf(sigs, in.Label); !ok {
			return nil, nil, fmt.Errorf("httpsig: %w: label %q is in Signature-Input but not in Signature",
				autherr.ErrMalformed, in.Label)
		}
	}
	return inputs, sigs, nil
}

// signatureOf returns the signature labelled label.
func signatureOf(sigs []member, label string) ([]byte, bool) {
	for _, m := range sigs {
		if m.key == label {
			return m.val.bin, true
		}
	}
	return nil, false
}

// Verify verifies the signature labelled label on m's target message with alg and pub, and returns its input.
// It checks RFC 9421 only: both fields carry the label, an `alg` parameter (if any) names alg, the signature base
// can be rebuilt, and the signature verifies. Whether created, expires, nonce and the covered components are
// acceptable is the application's decision (the WIMSE Verifier makes it).
func Verify(m Message, label string, alg Algorithm, pub crypto.PublicKey) (*SignatureInput, error) {
	if m.Request == nil && m.Response == nil {
		return nil, fmt.Errorf("httpsig: %w: no message to verify", autherr.ErrMalformed)
	}
	inputs, sigs, err := signatures(m.header())
	if err != nil {
		return nil, err
	}
	for i := range inputs {
		if inputs[i].Label == label {
			sig, _ := signatureOf(sigs, label)
			return verifyInput(m, &inputs[i], sig, alg, pub)
		}
	}
	return nil, fmt.Errorf("httpsig: %w: no signature labelled %q", autherr.ErrMissing, label)
}

func verifyInput(m Message, in *SignatureInput, sig []byte, alg Algorithm, pub crypto.PublicKey) (*SignatureInput, error) {
	if v, ok := in.StringParam("alg"); ok && Algorithm(v) != alg {
		return nil, fmt.Errorf("httpsig: %w: signature says alg %q, the key requires %q",
			autherr.ErrUnsupportedAlg, v, string(alg))
	}
	buf := getBaseBuf()
	base, _, err := appendSignatureBase(*buf, m, in)
	defer func() { putBaseBuf(buf, base) }()
	if err != nil {
		return nil, err
	}
	if err := alg.Verify(pub, base, sig); err != nil {
		return nil, err
	}
	return in, nil
}
