package httpsig

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// WIMSE profile constants (draft-ietf-wimse-http-signature-06).
const (
	// Label is the Signature-Input / Signature label of the WIMSE signature.
	Label = "wimse"
	// Tag is the required value of the signature's tag parameter.
	Tag = "wimse-workload-to-workload"
)

// Profile defaults.
const (
	// DefaultLifetime is expires - created when SignerOptions.Lifetime is zero.
	DefaultLifetime = time.Minute
	// DefaultClockSkew is the leeway for created and expires when VerifierConfig.ClockSkew is zero.
	DefaultClockSkew = 30 * time.Second
	// DefaultMaxAge bounds expires - created and the age of created when VerifierConfig.MaxAge is zero. The draft
	// only says "order of minutes".
	DefaultMaxAge = 5 * time.Minute
)

// maxNonceBytes caps the nonce a verifier accepts (and stores in its replay cache).
const maxNonceBytes = 256

// Signature parameter names of the profile.
const (
	paramCreated      = "created"
	paramExpires      = "expires"
	paramNonce        = "nonce"
	paramTag          = "tag"
	paramAudience     = "wimse-aud"
	paramSignResponse = "wimse-sign-response"
	paramReqNonce     = "wimse-req-nonce"
)

// fieldWIT is the component name of the Workload-Identity-Token field.
var fieldWIT = strings.ToLower(wire.HeaderWIT)

// Components the profile always covers, in the order a Signer lists them. Shared: never modified.
var (
	compWIT           = Component{Name: fieldWIT}
	compContentDigest = Component{Name: "content-digest"}
	requestFixed      = [...]Component{{Name: "@method"}, {Name: "@request-target"}}
	// responseFixed is @status, then the request's method and target with req (listed after the fields).
	responseFixed = [...]Component{{Name: "@status"}, Comp("@method", "req"), Comp("@request-target", "req")}
)

// Header fields the profile covers whenever the message carries them (besides content-digest, handled apart).
var (
	requestConditional  = []string{"content-type", "authorization", strings.ToLower(wire.HeaderTxnToken)}
	responseConditional = []string{"content-type"}
)

// SignerOptions configures a Signer.
type SignerOptions struct {
	// Lifetime sets expires = created + Lifetime (never past the WIT's exp); 0 means DefaultLifetime.
	Lifetime time.Duration
	// Audience is the wimse-aud value for every request. Empty means each request's target URI without query and
	// fragment: scheme://authority/path, with the authority lower-cased and without its default port.
	Audience string
	// RequestSignedResponse adds wimse-sign-response, asking the server to sign its response.
	RequestSignedResponse bool
	// Headers lists further header fields (lower-case) to cover when the message has them.
	Headers []string
	// DigestAlgorithm is the Content-Digest algorithm: DigestSHA256 (the default) or DigestSHA512.
	DigestAlgorithm string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Nonce returns a fresh nonce; nil means 128 random bits, base64url-encoded.
	Nonce func() (string, error)
}

// Signer signs requests (as a client) or responses (as a server) with one WIT and its private key. It is safe for
// concurrent use; make a new one when the WIT rotates.
type Signer struct {
	wit    string
	key    crypto.Signer
	alg    Algorithm
	expiry time.Time
	opts   SignerOptions
}

// witClaims is the part of a WIT the signer reads. The signer does not verify its own WIT (the receiver does).
type witClaims struct {
	Exp int64 `json:"exp"`
	Cnf struct {
		JWK *jose.JSONWebKey `json:"jwk"`
	} `json:"cnf"`
}

// NewSigner returns a Signer for wit, whose cnf.jwk must be the public half of key. The signature algorithm is
// cnf.jwk.alg mapped by AlgorithmFromJWS.
func NewSigner(wit string, key crypto.Signer, opts SignerOptions) (*Signer, error) {
	if key == nil {
		return nil, errors.New("httpsig: signer key is nil")
	}
	if len(wit) > wpt.MaxTokenSize {
		return nil, fmt.Errorf("httpsig: %w: WIT is %d bytes, limit %d", autherr.ErrTooLarge, len(wit), wpt.MaxTokenSize)
	}
	jws, err := jose.ParseSigned(wit, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
		jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512})
	if err != nil {
		return nil, fmt.Errorf("httpsig: %w: WIT: %v", autherr.ErrMalformed, err)
	}
	var c witClaims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		return nil, fmt.Errorf("httpsig: %w: WIT claims: %v", autherr.ErrMalformed, err)
	}
	if c.Cnf.JWK == nil || c.Exp == 0 {
		return nil, fmt.Errorf("httpsig: %w: WIT lacks cnf.jwk or exp", autherr.ErrMalformed)
	}
	alg, err := AlgorithmFromJWS(c.Cnf.JWK.Algorithm)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(c.Cnf.JWK.Key) {
		return nil, fmt.Errorf("httpsig: %w: the private key is not the WIT's cnf.jwk", autherr.ErrMismatch)
	}
	spec, err := alg.spec()
	if err != nil {
		return nil, err
	}
	if err := spec.checkKey(alg, key.Public()); err != nil {
		return nil, err
	}
	switch opts.DigestAlgorithm {
	case "":
		opts.DigestAlgorithm = DigestSHA256
	case DigestSHA256, DigestSHA512:
	default:
		return nil, fmt.Errorf("httpsig: %w: content digest algorithm %q", autherr.ErrUnsupportedAlg, opts.DigestAlgorithm)
	}
	for _, h := range opts.Headers {
		if !validComponentName(h) || strings.HasPrefix(h, "@") {
			return nil, fmt.Errorf("httpsig: SignerOptions.Headers: %q is not a lower-case field name", h)
		}
	}
	if opts.Lifetime <= 0 {
		opts.Lifetime = DefaultLifetime
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Nonce == nil {
		opts.Nonce = randomNonce
	}
	return &Signer{wit: wit, key: key, alg: alg, expiry: time.Unix(c.Exp, 0), opts: opts}, nil
}

func randomNonce() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Algorithm is the signature algorithm, from the WIT's cnf.jwk.alg.
func (s *Signer) Algorithm() Algorithm { return s.alg }

// WIT is the token the signer sends, so a caller can tell when it has rotated.
func (s *Signer) WIT() string { return s.wit }

// Expiry is the WIT's expiry; signing fails after it.
func (s *Signer) Expiry() time.Time { return s.expiry }

// SignRequest adds Workload-Identity-Token, Content-Digest (when body is not empty or the request already has the
// field), Signature-Input and Signature to r. body must be the exact content that will be sent (after any
// content coding); SignRequest does not touch r.Body. It covers @method, @request-target,
// workload-identity-token, and content-type, content-digest, authorization, txn-token and SignerOptions.Headers
// when present, with created, expires, nonce, tag, wimse-aud and, if asked, wimse-sign-response.
func (s *Signer) SignRequest(r *http.Request, body []byte) error {
	return s.SignRequestFor(r, body, s.opts.Audience)
}

// SignRequestFor is SignRequest with the wimse-aud value given per request: a proxy that rewrites the request's
// URL knows the audience the receiver expects better than the URL does. An empty aud means the default.
func (s *Signer) SignRequestFor(r *http.Request, body []byte, aud string) error {
	if r.Header == nil {
		r.Header = http.Header{}
	}
	if aud == "" {
		path := requestURL(r).EscapedPath()
		if path == "" {
			path = "/"
		}
		aud = scheme(r) + "://" + authority(r) + path
	}
	in, err := s.prepare(r.Header, body, requestFixed[:], requestConditional)
	if err != nil {
		return err
	}
	in.Params = append(in.Params, Param{paramAudience, aud})
	if s.opts.RequestSignedResponse {
		in.Params = append(in.Params, Param{paramSignResponse, true})
	}
	return Sign(Message{Request: r}, in, s.alg, s.key)
}

// SignResponse adds Workload-Identity-Token (this server's WIT), Content-Digest, Signature-Input and Signature to
// resp. resp.Request must be the request being answered: its method and target are covered with `req`, and if it
// carries a WIMSE signature its nonce is echoed in wimse-req-nonce. body is the exact response content.
func (s *Signer) SignResponse(resp *http.Response, body []byte) error {
	if resp.Request == nil {
		return errors.New("httpsig: SignResponse needs resp.Request, the request being answered")
	}
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	in, err := s.prepare(resp.Header, body, responseFixed[:1], responseConditional)
	if err != nil {
		return err
	}
	in.Components = append(in.Components, responseFixed[1:]...)
	reqIn, err := wimseInput(resp.Request.Header)
	if err != nil && !errors.Is(err, autherr.ErrMissing) {
		return fmt.Errorf("httpsig: reading the request's signature: %w", err)
	}
	if reqIn != nil {
		if nonce, ok := reqIn.StringParam(paramNonce); ok {
			in.Params = append(in.Params, Param{paramReqNonce, nonce})
		}
	}
	return Sign(Message{Request: resp.Request, Response: resp}, in, s.alg, s.key)
}

// prepare sets the WIT and Content-Digest fields of h and returns the signature input both directions share.
func (s *Signer) prepare(h http.Header, body []byte, fixed []Component, conditional []string) (*SignatureInput, error) {
	now := s.opts.Now()
	if !now.Before(s.expiry) {
		return nil, fmt.Errorf("httpsig: %w: the WIT expired at %s", autherr.ErrExpired, s.expiry.UTC().Format(time.RFC3339))
	}
	expires := now.Add(s.opts.Lifetime)
	if expires.After(s.expiry) {
		expires = s.expiry
	}
	nonce, err := s.opts.Nonce()
	if err != nil {
		return nil, fmt.Errorf("httpsig: nonce: %w", err)
	}
	// The input, its components and parameters, and the two fields' values, in one allocation.
	st := new(signState)
	st.fields[0] = s.wit
	h[keyWIT] = st.fields[0:1:1] // h.Set, with its value in st
	if len(body) > 0 || len(h[HeaderContentDigest]) > 0 {
		d, err := ContentDigest(body, s.opts.DigestAlgorithm)
		if err != nil {
			return nil, err
		}
		st.fields[1] = d
		h[HeaderContentDigest] = st.fields[1:2:2]
	}
	// Room for the WIT, content-digest and a response's two req components besides.
	comps := st.comps[:0]
	if n := len(fixed) + 4 + len(conditional) + len(s.opts.Headers); n > len(st.comps) {
		comps = make([]Component, 0, n)
	}
	comps = append(comps, fixed...)
	comps = append(comps, compWIT)
	in := &st.in
	in.Label, in.Components = Label, comps
	for _, f := range conditional {
		if len(fieldLines(h, f)) > 0 {
			in.Components = append(in.Components, Component{Name: f})
		}
	}
	if len(h[HeaderContentDigest]) > 0 {
		in.Components = append(in.Components, compContentDigest)
	}
	for _, f := range s.opts.Headers {
		if len(fieldLines(h, f)) > 0 && !slices.ContainsFunc(in.Components, func(c Component) bool { return c.Name == f }) {
			in.Components = append(in.Components, Component{Name: f})
		}
	}
	// Room for the parameters either direction adds (wimse-aud, wimse-sign-response; wimse-req-nonce).
	in.Params = append(st.params[:0],
		Param{paramCreated, now.Unix()},
		Param{paramExpires, expires.Unix()},
		Param{paramNonce, nonce},
		Param{paramTag, Tag},
	)
	return in, nil
}

// signState is what prepare allocates for one message: the signature input with room for the components and
// parameters the profile signs, and the values of the WIT and Content-Digest fields (each field's []string is a
// capacity-limited slice of fields, so appending to one never touches the other).
type signState struct {
	in     SignatureInput
	comps  [10]Component
	params [6]Param
	fields [2]string
}

// keyWIT is the canonical form of the WIT field's name, the key of http.Header.
var keyWIT = http.CanonicalHeaderKey(wire.HeaderWIT)

// wimseInput returns the WIMSE signature input of h (see findWIMSE).
func wimseInput(h http.Header) (*SignatureInput, error) {
	inputs, _, err := signatures(h)
	if err != nil {
		return nil, err
	}
	return findWIMSE(inputs)
}

// findWIMSE returns the WIMSE signature: the one labelled "wimse", else the only one tagged
// wimse-workload-to-workload. No such signature is autherr.ErrMissing.
func findWIMSE(inputs []SignatureInput) (*SignatureInput, error) {
	var tagged []int
	for i := range inputs {
		if inputs[i].Label == Label {
			return &inputs[i], nil
		}
		if t, _ := inputs[i].StringParam(paramTag); t == Tag {
			tagged = append(tagged, i)
		}
	}
	switch len(tagged) {
	case 0:
		return nil, fmt.Errorf("httpsig: %w: no signature labelled %q or tagged %q", autherr.ErrMissing, Label, Tag)
	case 1:
		return &inputs[tagged[0]], nil
	}
	return nil, fmt.Errorf("httpsig: %w: %d signatures tagged %q and none labelled %q",
		autherr.ErrMalformed, len(tagged), Tag, Label)
}

// WITVerifier verifies a Workload Identity Token; *wpt.Verifier is one.
type WITVerifier interface {
	VerifyWIT(ctx context.Context, token string) (*wpt.WIT, error)
}

// ReplayChecker records a nonce until expiresAt and fails with autherr.ErrReplay if it was already recorded;
// *replay.Cache is one.
type ReplayChecker interface {
	Check(id string, expiresAt time.Time) error
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// WITs verifies the sender's WIT (required).
	WITs WITVerifier
	// Replay remembers nonces, scoped by WIT subject (required).
	Replay ReplayChecker
	// Audiences are the wimse-aud values that name this receiver, from trusted configuration (e.g. this route's
	// target URI without query, plus aliases) — never from the request's Host. Required by VerifyRequest.
	Audiences []string
	// ClockSkew is the leeway for created and expires; 0 means DefaultClockSkew.
	ClockSkew time.Duration
	// MaxAge bounds expires - created and how old created may be; 0 means DefaultMaxAge.
	MaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier verifies WIMSE-signed requests (as a server) and responses (as a client). It is safe for concurrent use.
type Verifier struct {
	cfg VerifierConfig
}

// NewVerifier checks cfg and returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.WITs == nil || cfg.Replay == nil {
		return nil, errors.New("httpsig: VerifierConfig needs WITs and Replay")
	}
	if cfg.ClockSkew < 0 || cfg.MaxAge < 0 {
		return nil, errors.New("httpsig: VerifierConfig ClockSkew and MaxAge must not be negative")
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Audiences = slices.Clone(cfg.Audiences)
	return &Verifier{cfg: cfg}, nil
}

// Result is a verified WIMSE signature.
type Result struct {
	// WIT is the sender's verified WIT; WIT.Subject is the authenticated peer. Shared and read-only.
	WIT *wpt.WIT
	// Nonce, Created and Expires are the signature's parameters.
	Nonce            string
	Created, Expires time.Time
	// Covered lists the covered component identifiers as serialized, e.g. `"@method"`, `"@status"`.
	Covered []string
	// Audience is the wimse-aud value that matched (requests only).
	Audience string
	// SignResponse reports wimse-sign-response: the client wants a signed response (requests only).
	SignResponse bool
}

// VerifyRequest verifies the WIMSE signature of a request received by a server, in this order: the WIT (via
// WITVerifier), the signature's shape (tag, no keyid or alg, created/expires/nonce/wimse-aud present, every
// required component covered), the time window, wimse-aud against Audiences, the signature with cnf.jwk under
// cnf.jwk.alg, Content-Digest against body, and last the nonce replay check — so a request failing any other check
// never consumes its nonce. body is the request content as received (after transfer decoding).
func (v *Verifier) VerifyRequest(ctx context.Context, r *http.Request, body []byte) (*Result, error) {
	return v.VerifyRequestFor(ctx, r, body, v.cfg.Audiences)
}

// VerifyRequestFor is VerifyRequest with the acceptable wimse-aud values given per request, for receivers whose
// audience includes the request path (the draft's default) and so cannot be fixed at construction. audiences must
// come from trusted configuration, never from the request's Host.
func (v *Verifier) VerifyRequestFor(ctx context.Context, r *http.Request, body []byte, audiences []string) (*Result, error) {
	if len(audiences) == 0 {
		return nil, errors.New("httpsig: no audiences configured for this request")
	}
	return v.verify(ctx, Message{Request: r}, body, nil, audiences)
}

// Pending is a request whose WIT and signature over the headers verified, and whose body is still to be checked
// against the signed Content-Digest (Pending.VerifyBody). It is not a verified request yet.
type Pending struct {
	v   *Verifier
	h   http.Header
	res Result
	// covered holds res.Covered when it fits: one allocation for the whole verification state.
	covered [10]string
}

// VerifyRequestHeaders is the first half of VerifyRequestFor, for a server that must not read a body before it
// knows who sent it: every check but the Content-Digest against the body and the nonce replay check, so nothing
// is read or buffered for a sender whose WIT or signature does not verify. A request of known, non-zero length
// (r.ContentLength > 0) must cover content-digest here; one of unknown length is held to it in VerifyBody.
func (v *Verifier) VerifyRequestHeaders(ctx context.Context, r *http.Request, audiences []string) (*Pending, error) {
	if len(audiences) == 0 {
		return nil, errors.New("httpsig: no audiences configured for this request")
	}
	return v.verifyHeaders(ctx, Message{Request: r}, r.ContentLength > 0, nil, audiences)
}

// Header is what the headers proved: the sender's WIT and the signature's parameters. The request is not verified
// until VerifyBody returns.
func (p *Pending) Header() *Result { return &p.res }

// VerifyBody completes the verification: body (the content as received, after transfer decoding) against the
// signed Content-Digest, then the nonce replay check, last, so only a request that passed everything consumes its
// nonce. Call it once.
func (p *Pending) VerifyBody(body []byte) (*Result, error) {
	h, res := p.h, &p.res
	// 5. The body against the signed digest.
	if len(body) > 0 || len(h.Values(HeaderContentDigest)) > 0 {
		if len(h.Values(HeaderContentDigest)) == 0 {
			return nil, fmt.Errorf("httpsig: %w: the message has a body but no Content-Digest", autherr.ErrMalformed)
		}
		if err := VerifyContentDigest(h.Values(HeaderContentDigest), body); err != nil {
			return nil, err
		}
	}

	// 6. Replay, last: only a proof that passed everything else consumes its nonce.
	wit := res.WIT
	if err := p.v.cfg.Replay.Check(wit.Subject+"\x00"+res.Nonce, res.Expires.Add(p.v.cfg.ClockSkew)); err != nil {
		if errors.Is(err, autherr.ErrReplay) || errors.Is(err, autherr.ErrTooLarge) {
			return nil, fmt.Errorf("httpsig: nonce %q from %s: %w", res.Nonce, wit.Subject, err)
		}
		return nil, fmt.Errorf("httpsig: replay check: %w", err)
	}
	return res, nil
}

// VerifyResponse verifies the WIMSE signature of a response received by a client. resp.Request must be the
// request as sent (SignRequest's output): the response must cover its method and target with `req`, and when the
// request carried a WIMSE signature, wimse-req-nonce must equal its nonce (autherr.ErrMismatch otherwise; absent is
// autherr.ErrMalformed when the request asked for a signed response). Checks otherwise as VerifyRequest, without
// wimse-aud. The caller decides whether Result.WIT.Subject is the server it meant to call.
func (v *Verifier) VerifyResponse(ctx context.Context, resp *http.Response, body []byte) (*Result, error) {
	if resp.Request == nil {
		return nil, errors.New("httpsig: VerifyResponse needs resp.Request, the request as sent")
	}
	reqIn, err := wimseInput(resp.Request.Header)
	if err != nil && !errors.Is(err, autherr.ErrMissing) {
		return nil, fmt.Errorf("httpsig: reading the request's own signature: %w", err)
	}
	return v.verify(ctx, Message{Request: resp.Request, Response: resp}, body, reqIn, nil)
}

func (v *Verifier) verify(ctx context.Context, m Message, body []byte, reqIn *SignatureInput, audiences []string) (*Result, error) {
	p, err := v.verifyHeaders(ctx, m, len(body) > 0, reqIn, audiences)
	if err != nil {
		return nil, err
	}
	return p.VerifyBody(body)
}

// verifyHeaders runs steps 1 to 4 of the verification; hasBody says the message has content, which
// content-digest must then cover.
func (v *Verifier) verifyHeaders(ctx context.Context, m Message, hasBody bool, reqIn *SignatureInput, audiences []string) (*Pending, error) {
	isResp := m.Response != nil
	what := "request"
	if isResp {
		what = "response"
	}
	h := m.header()
	if h == nil {
		h = http.Header{}
	}
	token, err := witField(h, what, isResp, reqIn)
	if err != nil {
		return nil, err
	}

	// 1. The WIT, fully, before anything it vouches for.
	wit, err := v.cfg.WITs.VerifyWIT(ctx, token)
	if err != nil {
		return nil, err
	}
	alg, err := AlgorithmFromJWS(wit.Key.Algorithm)
	if err != nil {
		return nil, err
	}

	// 2. Find the WIMSE signature and check its shape.
	inputs, sigs, err := signatures(h)
	if err != nil {
		return nil, err
	}
	in, err := findWIMSE(inputs)
	if err != nil {
		return nil, err
	}
	p := &Pending{v: v, h: h}
	res := &p.res
	if err := v.checkShape(res, p.covered[:0], in, h, hasBody, isResp); err != nil {
		return nil, err
	}
	res.WIT = wit

	// 3. Time window, audience, request nonce binding.
	if err := v.checkTimes(res); err != nil {
		return nil, err
	}
	if !isResp {
		if !slices.Contains(audiences, res.Audience) {
			return nil, fmt.Errorf("httpsig: %w: wimse-aud %q is not one of %v", autherr.ErrWrongAudience, res.Audience, audiences)
		}
	} else if err := checkReqNonce(in, reqIn); err != nil {
		return nil, err
	}

	// 4. The signature itself, with the WIT's key and algorithm.
	sig, _ := signatureOf(sigs, in.Label)
	if _, err := verifyInput(m, in, sig, alg, wit.Key.Key); err != nil {
		return nil, err
	}
	return p, nil
}

// witField returns the message's one WIT after the cheap presence checks: no WIT or no signature fields means
// no proof at all. what names the message ("request", "response") in errors.
func witField(h http.Header, what string, isResp bool, reqIn *SignatureInput) (string, error) {
	wits := h.Values(wire.HeaderWIT)
	if len(wits) == 0 {
		return "", fmt.Errorf("httpsig: %w: %s has no %s field", autherr.ErrMissing, what, wire.HeaderWIT)
	}
	if len(h.Values(wire.HeaderSignatureInput)) == 0 || len(h.Values(wire.HeaderSignature)) == 0 {
		if isResp && reqIn != nil && reqIn.flagParam(paramSignResponse) {
			return "", fmt.Errorf("httpsig: %w: the request asked for a signed response but the response is unsigned",
				autherr.ErrMissing)
		}
		return "", fmt.Errorf("httpsig: %w: %s has no Signature-Input or Signature field", autherr.ErrMissing, what)
	}
	token := wits[0]
	switch {
	case len(wits) > 1 || strings.Contains(token, ","):
		return "", fmt.Errorf("httpsig: %w: %s carries more than one %s", autherr.ErrMalformed, what, wire.HeaderWIT)
	case len(token) > wpt.MaxTokenSize:
		return "", fmt.Errorf("httpsig: %w: %s is %d bytes, limit %d", autherr.ErrTooLarge, wire.HeaderWIT, len(token), wpt.MaxTokenSize)
	}
	return token, nil
}

// SignResponseRequested reports whether the request's WIMSE signature carries wimse-sign-response: the client
// asks for a signed response. Only meaningful once VerifyRequest accepted the request.
func SignResponseRequested(h http.Header) bool {
	// A parameter key is never escaped, so without its name in the field it is absent: most requests skip the parse.
	if !slices.ContainsFunc(h.Values(wire.HeaderSignatureInput), func(l string) bool {
		return strings.Contains(l, paramSignResponse)
	}) {
		return false
	}
	in, err := wimseInput(h)
	return err == nil && in.flagParam(paramSignResponse)
}

// flagParam reports whether the signature parameter key is a true Boolean.
func (in *SignatureInput) flagParam(key string) bool {
	v, _ := in.Param(key)
	b, ok := v.(bool)
	return ok && b
}

// checkShape applies the profile's rules on parameters and covered components and fills in res, with res.Covered
// appended to covered.
func (v *Verifier) checkShape(res *Result, covered []string, in *SignatureInput, h http.Header, hasBody bool, isResp bool) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("httpsig: %w: signature %q: %s", autherr.ErrMalformed, in.Label, fmt.Sprintf(format, args...))
	}
	if tag, ok := in.StringParam(paramTag); !ok || tag != Tag {
		return bad("tag is %q, want %q", tag, Tag)
	}
	for _, p := range []string{"keyid", "alg"} {
		if _, ok := in.Param(p); ok {
			return bad("the %s parameter must not be used; the key and algorithm come from the WIT", p)
		}
	}
	var ok bool
	if res.Created, ok = in.TimeParam(paramCreated); !ok {
		return bad("created is missing")
	}
	if res.Expires, ok = in.TimeParam(paramExpires); !ok {
		return bad("expires is missing")
	}
	if res.Nonce, ok = in.StringParam(paramNonce); !ok || res.Nonce == "" {
		return bad("nonce is missing or empty")
	}
	if len(res.Nonce) > maxNonceBytes {
		return fmt.Errorf("httpsig: %w: nonce is %d bytes, limit %d", autherr.ErrTooLarge, len(res.Nonce), maxNonceBytes)
	}
	if !isResp {
		if res.Audience, ok = in.StringParam(paramAudience); !ok {
			return bad("wimse-aud is missing")
		}
		if sr, present := in.Param(paramSignResponse); present {
			b, isBool := sr.(bool)
			if !isBool {
				return bad("wimse-sign-response is not a boolean")
			}
			res.SignResponse = b
		}
	}

	var reqBuf [8]Component
	required := append(reqBuf[:0], requestFixed[:]...)
	conditional := requestConditional
	if isResp {
		required = append(reqBuf[:0], responseFixed[:]...)
		conditional = responseConditional
	}
	required = append(required, compWIT)
	for _, f := range conditional {
		if len(fieldLines(h, f)) > 0 {
			required = append(required, Component{Name: f})
		}
	}
	if hasBody || len(h[HeaderContentDigest]) > 0 {
		if len(h[HeaderContentDigest]) == 0 {
			return bad("the message has a body but no Content-Digest")
		}
		required = append(required, compContentDigest)
	}
	res.Covered = coveredIDs(covered, in.Components)
	for _, want := range required {
		if !slices.ContainsFunc(in.Components, want.sameAs) {
			return bad("does not cover the required component %s", want)
		}
	}
	return nil
}

// commonIDs maps the components a WIMSE signature usually covers to their serialized identifiers (without
// parameters), made once so that Result.Covered costs no string per component and request.
var commonIDs = func() map[string]string {
	m := map[string]string{}
	for _, n := range append([]string{"@method", "@request-target", "@status", "@authority", "@path", "@query",
		"@scheme", "@target-uri", fieldWIT, "content-digest"}, requestConditional...) {
		m[n] = Component{Name: n}.String()
	}
	return m
}()

// coveredIDs appends the serialized identifiers of comps to dst (Result.Covered).
func coveredIDs(dst []string, comps []Component) []string {
	for _, c := range comps {
		if id, ok := commonIDs[c.Name]; ok && len(c.Params) == 0 {
			dst = append(dst, id)
			continue
		}
		dst = append(dst, c.String())
	}
	return dst
}

func (v *Verifier) checkTimes(res *Result) error {
	now, skew, maxAge := v.cfg.Now(), v.cfg.ClockSkew, v.cfg.MaxAge
	switch {
	case !res.Expires.After(res.Created):
		return fmt.Errorf("httpsig: %w: expires %d is not after created %d", autherr.ErrMalformed, res.Expires.Unix(), res.Created.Unix())
	case res.Expires.Sub(res.Created) > maxAge:
		return fmt.Errorf("httpsig: %w: signature lifetime %s exceeds %s", autherr.ErrExpired, res.Expires.Sub(res.Created), maxAge)
	case res.Created.After(now.Add(skew)):
		return fmt.Errorf("httpsig: %w: created %d is %s in the future", autherr.ErrNotYetValid, res.Created.Unix(), res.Created.Sub(now))
	case now.After(res.Expires.Add(skew)):
		return fmt.Errorf("httpsig: %w: expired at %d, %s ago", autherr.ErrExpired, res.Expires.Unix(), now.Sub(res.Expires))
	case now.Sub(res.Created) > maxAge+skew:
		return fmt.Errorf("httpsig: %w: created %s ago, more than %s", autherr.ErrExpired, now.Sub(res.Created), maxAge)
	}
	return nil
}

// checkReqNonce binds a response to the request it answers through wimse-req-nonce.
func checkReqNonce(in, reqIn *SignatureInput) error {
	got, present := in.Param(paramReqNonce)
	if reqIn == nil {
		if present {
			return fmt.Errorf("httpsig: %w: response has wimse-req-nonce but the request was not WIMSE-signed", autherr.ErrMismatch)
		}
		return nil
	}
	want, _ := reqIn.StringParam(paramNonce)
	if !present {
		if reqIn.flagParam(paramSignResponse) {
			return fmt.Errorf("httpsig: %w: response lacks wimse-req-nonce though the request asked for a signed response",
				autherr.ErrMalformed)
		}
		return nil
	}
	if s, ok := got.(string); !ok || s != want {
		return fmt.Errorf("httpsig: %w: response wimse-req-nonce %v is not the request nonce %q", autherr.ErrMismatch, got, want)
	}
	return nil
}
