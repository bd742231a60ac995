package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/httpsig"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/wire"
)

// Signed responses (draft-ietf-wimse-http-signature-06 §"response signing"): a caller that signs its request with
// wimse-sign-response gets a response signed with this workload's WIT, or no success at all.
//
// A signature covers a digest of the whole body, so a signed response is buffered, up to limits.maxBodyBytes,
// before the first byte goes out, on both sides. An event stream (text/event-stream) cannot wait for its end, and
// a body over the limit cannot be digested: ingress refuses both with 501 response_signing_unavailable instead of
// an unsigned 200. Trailers (gRPC status) are not covered.

// SignResponses, last in the ingress chain, arms response signing for httpsig requests that ask for it. It
// refuses with 501 before the tool sees the request when this sidecar has no WIT to sign with.
type SignResponses struct {
	src     identity.Source
	maxBody int64
	mu      sync.Mutex
	signer  *httpsig.Signer
}

// NewSignResponses signs with the WIT src holds, buffering responses of up to maxBody bytes.
func NewSignResponses(src identity.Source, maxBody int64) *SignResponses {
	return &SignResponses{src: src, maxBody: maxBody}
}

// Handle implements proxy.Step.
func (s *SignResponses) Handle(_ context.Context, x *proxy.Exchange) error {
	r := x.Request
	if x.Identity == nil || x.Identity.Method != wire.AuthWITHTTPSig || !httpsig.SignResponseRequested(r.Header) {
		return nil
	}
	if _, err := s.current(); err != nil {
		return err
	}
	// The request as received: its method and target are covered with ;req and its nonce is echoed. The proxy
	// strips the signature fields from r before forwarding, so keep them now.
	asked := &http.Request{Method: r.Method, URL: r.URL, RequestURI: r.RequestURI, Host: r.Host, TLS: r.TLS,
		Header: http.Header{}}
	for _, k := range []string{wire.HeaderSignatureInput, wire.HeaderSignature} {
		asked.Header[k] = r.Header.Values(k)
	}
	x.OnResponse(func(res *http.Response) error { return s.sign(res, asked) })
	return nil
}

// current returns the signer of the current WIT, rebuilt when the WIT rotates.
func (s *SignResponses) current() (*httpsig.Signer, error) {
	w, err := s.src.GetWIT()
	if err != nil {
		return nil, fmt.Errorf("%w: the request asked for a signed response (wimse-sign-response) and this sidecar has "+
			"no WIT to sign with: %v", autherr.ErrCannotSignResponse, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.signer == nil || s.signer.WIT() != w.Token {
		sg, err := httpsig.NewSigner(w.Token, w.Key, httpsig.SignerOptions{})
		if err != nil {
			return nil, fmt.Errorf("%w: our WIT and key cannot sign: %v", autherr.ErrCannotSignResponse, err)
		}
		s.signer = sg
	}
	return s.signer, nil
}

func (s *SignResponses) sign(res *http.Response, asked *http.Request) error {
	if proxy.IsEventStream(res.Header) {
		return fmt.Errorf("%w: the tool answered with an event stream, which cannot be signed: the signature covers a "+
			"digest of the whole body", autherr.ErrCannotSignResponse)
	}
	body, err := proxy.BufferResponse(res, s.maxBody)
	if err != nil {
		return fmt.Errorf("%w: the tool's response cannot be signed: %v", autherr.ErrCannotSignResponse, err)
	}
	signer, err := s.current()
	if err != nil {
		return err
	}
	// Whatever the tool put in these fields would be taken for ours.
	for _, k := range []string{wire.HeaderSignatureInput, wire.HeaderSignature, wire.HeaderWIT, httpsig.HeaderContentDigest} {
		res.Header.Del(k)
	}
	signed := *res
	signed.Request = asked
	if err := signer.SignResponse(&signed, body); err != nil {
		return fmt.Errorf("%w: signing the response: %v", autherr.ErrCannotSignResponse, err)
	}
	return nil
}

// ResponseVerifier checks, on egress routes with signedResponses, that the response is signed by the workload the
// route calls (serverID, else a member of our trust domain) over exactly what the agent will receive.
type ResponseVerifier struct {
	v       *httpsig.Verifier
	self    spiffeid.TrustDomain
	maxBody int64
}

// NewResponseVerifier verifies with v responses of up to maxBody bytes; without a route serverID, the signer must be
// of the trust domain self.
func NewResponseVerifier(v *httpsig.Verifier, self spiffeid.TrustDomain, maxBody int64) *ResponseVerifier {
	return &ResponseVerifier{v: v, self: self, maxBody: maxBody}
}

// VerifyResponse implements proxy.ResponseVerifier.
func (rv *ResponseVerifier) VerifyResponse(ctx context.Context, res *http.Response, rt *proxy.Route) error {
	unverified := func(format string, args ...any) error {
		return fmt.Errorf("%w: route %q: the upstream's %d response %s", autherr.ErrResponseUnverified, rt.Name,
			res.StatusCode, fmt.Sprintf(format, args...))
	}
	if res.Header.Get(wire.HeaderSignatureInput) == "" && proxy.IsEventStream(res.Header) {
		return unverified("is an unsigned event stream; an event stream cannot be signed")
	}
	body, err := proxy.BufferResponse(res, rv.maxBody)
	if err != nil {
		return unverified("cannot be verified: %v", err)
	}
	got, err := rv.v.VerifyResponse(ctx, res, body)
	if err != nil {
		err := unverified("failed verification: %v", err)
		if code := refusalOf(res, body); code != "" {
			// The ingress's own refusal code is what it chose to tell any caller; the rest stays in our log.
			return &proxy.PublicError{Err: fmt.Errorf("%w; its body: %s", err, strings.TrimSpace(string(body))),
				Description: "the upstream refused the request unsigned: " + code}
		}
		return err
	}
	sub := got.WIT.Subject
	if rt.UpstreamID != "" {
		if sub != rt.UpstreamID {
			return unverified("is signed by %s, not the route's serverID %s", sub, rt.UpstreamID)
		}
	} else if id, err := spiffeid.FromString(sub); err != nil || id.TrustDomain() != rv.self {
		return unverified("is signed by %s, outside our trust domain %s (set the route's serverID)", sub, rv.self)
	}
	return nil
}

// refusalOf returns the JSON error code of an unsigned refusal of the ingress sidecar, so the agent still learns
// why, or "".
func refusalOf(res *http.Response, body []byte) string {
	if res.StatusCode < 400 || res.Header.Get(wire.HeaderSignatureInput) != "" ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") || len(body) > 1024 {
		return ""
	}
	var refusal struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &refusal) != nil || !slices.Contains(autherr.Codes(), refusal.Error) {
		return ""
	}
	return refusal.Error
}

var (
	_ proxy.Step             = (*SignResponses)(nil)
	_ proxy.ResponseVerifier = (*ResponseVerifier)(nil)
)
