package steps

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/httpsig"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/proxy"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// The proof adapters fit pkg/wpt and pkg/httpsig to the data plane's seams (proxy.ProofSigner,
// proxy.Authenticator). Credentials are read from the identity source on every request, so a rotated WIT is
// used from the next request on; the per-WIT state (a Prover, a Signer) is rebuilt only when the WIT changes.

// WPTSigner adds Workload-Identity-Token and Workload-Proof-Token on egress.
type WPTSigner struct {
	src    identity.Source
	prover atomic.Pointer[wpt.Prover]
}

// NewWPTSigner signs with the WIT src holds.
func NewWPTSigner(src identity.Source) *WPTSigner { return &WPTSigner{src: src} }

// SignRequest implements proxy.ProofSigner.
func (s *WPTSigner) SignRequest(_ context.Context, r *http.Request, rt *proxy.Route) error {
	w, err := s.src.GetWIT()
	if err != nil {
		return fmt.Errorf("egress: no usable WIT to prove our identity: %v", err)
	}
	p := s.prover.Load()
	if p == nil || p.WIT() != w.Token {
		if p, err = wpt.NewProver(w.Token, w.Key); err != nil {
			return fmt.Errorf("egress: WIT and key do not fit: %v", err)
		}
		s.prover.Store(p)
	}
	proof, err := p.Mint(wpt.ProofParams{
		Audience:    rt.TargetAudience(r),
		Lifetime:    rt.ProofLifetime,
		AccessToken: bearer(r.Header),
		TxnToken:    r.Header.Get(wire.HeaderTxnToken),
	})
	if err != nil {
		return fmt.Errorf("egress: minting a WPT: %v", err)
	}
	r.Header.Set(wire.HeaderWIT, p.WIT())
	r.Header.Set(wire.HeaderWPT, proof)
	return nil
}

// HTTPSigSigner adds the WIMSE HTTP message signature on egress.
type HTTPSigSigner struct {
	src identity.Source
	mu  sync.Mutex
	// signers are per route (lifetime differs) and per WIT; rebuilt when the WIT rotates.
	signers map[string]*httpsig.Signer
	wit     string
}

// NewHTTPSigSigner signs with the WIT src holds.
func NewHTTPSigSigner(src identity.Source) *HTTPSigSigner { return &HTTPSigSigner{src: src} }

// SignRequest implements proxy.ProofSigner.
func (s *HTTPSigSigner) SignRequest(_ context.Context, r *http.Request, rt *proxy.Route) error {
	w, err := s.src.GetWIT()
	if err != nil {
		return fmt.Errorf("egress: no usable WIT to prove our identity: %v", err)
	}
	signer, err := s.signer(w, rt)
	if err != nil {
		return err
	}
	body, buffered := proxy.BufferedBody(r)
	if !buffered && r.GetBody != nil {
		rc, err := r.GetBody()
		if err != nil {
			return fmt.Errorf("egress: reading the buffered body: %v", err)
		}
		body, err = readBuffered(rc, r.ContentLength)
		rc.Close()
		if err != nil {
			return fmt.Errorf("egress: reading the buffered body: %v", err)
		}
	}
	// The outbound request is a copy of the agent's, whose RequestURI may be the absolute form it sent to the
	// proxy; what goes on the wire, and what the receiver's @request-target is, comes from r.URL.
	r.RequestURI = ""
	return signer.SignRequestFor(r, body, rt.TargetAudience(r))
}

// readBuffered reads a buffered body whose length the proxy set: into a slice of exactly that size when the
// length holds, rather than io.ReadAll's growing buffer; anything past it is still read.
func readBuffered(rc io.Reader, n int64) ([]byte, error) {
	if n < 0 {
		return io.ReadAll(rc)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, err
	}
	for {
		var one [1]byte
		k, err := rc.Read(one[:])
		if k > 0 {
			rest, err := io.ReadAll(rc)
			return append(append(b, one[0]), rest...), err
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func (s *HTTPSigSigner) signer(w *identity.WIT, rt *proxy.Route) (*httpsig.Signer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wit != w.Token {
		s.signers, s.wit = map[string]*httpsig.Signer{}, w.Token
	}
	if sg := s.signers[rt.Name]; sg != nil {
		return sg, nil
	}
	sg, err := httpsig.NewSigner(w.Token, w.Key, httpsig.SignerOptions{Lifetime: rt.ProofLifetime,
		RequestSignedResponse: rt.SignedResponses})
	if err != nil {
		return nil, fmt.Errorf("egress: WIT and key do not fit: %v", err)
	}
	s.signers[rt.Name] = sg
	return sg, nil
}

// WPTAuthenticator verifies WIT + WPT on ingress.
type WPTAuthenticator struct{ v *wpt.Verifier }

// NewWPTAuthenticator verifies with v.
func NewWPTAuthenticator(v *wpt.Verifier) *WPTAuthenticator { return &WPTAuthenticator{v: v} }

// Authenticate implements proxy.Authenticator.
func (a *WPTAuthenticator) Authenticate(ctx context.Context, r *http.Request, _ *proxy.Peer, rt *proxy.Route) (*proxy.Identity, error) {
	wit, proof, err := wpt.ExtractHeaders(r.Header)
	if err != nil {
		return nil, err
	}
	// A WPT binds one access token (ath) and one Txn-Token (tth). A second line of either would reach the tool
	// unbound, beside the verified identity.
	for _, name := range []string{"Authorization", wire.HeaderTxnToken} {
		if n := len(r.Header.Values(name)); n > 1 {
			return nil, fmt.Errorf("%w: %d %s header lines; a WPT binds only one", autherr.ErrMalformed, n, name)
		}
	}
	res, err := a.v.VerifyRequest(ctx, wpt.Request{
		WIT:         wit,
		WPT:         proof,
		Audiences:   []string{rt.ExpectedAudience(r)},
		AccessToken: bearer(r.Header),
		TxnToken:    r.Header.Get(wire.HeaderTxnToken),
	})
	if err != nil {
		return nil, err
	}
	return &proxy.Identity{
		Subject:  res.WIT.Subject,
		Method:   wire.AuthWITWPT,
		ProofID:  res.JTI,
		Expiry:   res.WIT.Expiry,
		IssuedAt: res.WIT.IssuedAt,
		WITID:    res.WIT.ID,
	}, nil
}

// HTTPSigAuthenticator verifies WIT + HTTP message signature on ingress: the WIT and the signature over the
// headers here, before the proxy reads the body; the body against Content-Digest, and the nonce, in VerifyBody.
type HTTPSigAuthenticator struct{ v *httpsig.Verifier }

// NewHTTPSigAuthenticator verifies with v.
func NewHTTPSigAuthenticator(v *httpsig.Verifier) *HTTPSigAuthenticator {
	return &HTTPSigAuthenticator{v: v}
}

// Authenticate implements proxy.Authenticator.
func (a *HTTPSigAuthenticator) Authenticate(ctx context.Context, r *http.Request, _ *proxy.Peer, rt *proxy.Route) (*proxy.Identity, error) {
	st := &httpsigIdentity{aud: [1]string{rt.ExpectedAudience(r)}}
	p, err := a.v.VerifyRequestHeaders(ctx, r, st.aud[:])
	if err != nil {
		return nil, err
	}
	res := p.Header()
	st.pending = p
	st.id = proxy.Identity{
		Subject:    res.WIT.Subject,
		Method:     wire.AuthWITHTTPSig,
		ProofID:    res.Nonce,
		Expiry:     res.Expires,
		IssuedAt:   res.WIT.IssuedAt,
		WITID:      res.WIT.ID,
		VerifyBody: st.verifyBody,
	}
	return &st.id, nil
}

// httpsigIdentity is one request's Identity with the audiences it was checked against and the body check still
// pending, in one allocation.
type httpsigIdentity struct {
	id      proxy.Identity
	aud     [1]string
	pending *httpsig.Pending
}

func (st *httpsigIdentity) verifyBody(body []byte) error {
	_, err := st.pending.VerifyBody(body)
	return err
}

// bearer returns the OAuth access token of an Authorization header, or "": the credentials after the Bearer or
// DPoP scheme (RFC 6750, RFC 9449), in any letter case, after spaces or tabs, which servers accept too. A token
// that a tool would take must be bound by the WPT's ath, so this errs on the side of finding one.
func bearer(h http.Header) string {
	v := strings.TrimLeft(h.Get("Authorization"), " \t")
	i := strings.IndexAny(v, " \t")
	if i < 0 || !(strings.EqualFold(v[:i], "bearer") || strings.EqualFold(v[:i], "dpop")) {
		return ""
	}
	return strings.Trim(v[i:], " \t")
}

var (
	_ proxy.ProofSigner   = (*WPTSigner)(nil)
	_ proxy.ProofSigner   = (*HTTPSigSigner)(nil)
	_ proxy.Authenticator = (*WPTAuthenticator)(nil)
	_ proxy.Authenticator = (*HTTPSigAuthenticator)(nil)
)
