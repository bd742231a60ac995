//go:build interop

package interop

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/httpsig"
	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// These tests cross-check pkg/httpsig against the independent node implementation pinned in package.json
// (http-message-signatures 1.0.6, structured-headers 2.1.0): our signatures must verify there, and theirs here.

const (
	httpsigClientSub = "spiffe://example.org/agent"
	httpsigServerSub = "spiffe://example.org/tool"
)

// httpsigTD is a trust domain with a real WIT issuer and the wpt.Verifier that trusts it.
type httpsigTD struct {
	issuer *wpt.Issuer
	wits   *wpt.Verifier
}

func newHTTPSigTD(t *testing.T) *httpsigTD {
	t.Helper()
	issuerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := wpt.NewIssuer(issuerKey, "k1", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	bundles := jwtbundle.NewSet(jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{"k1": issuerKey.Public()}))
	wits, err := wpt.NewVerifier(wpt.VerifierConfig{Bundles: wpt.FromJWTBundles(bundles), Replay: replay.New(replay.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	return &httpsigTD{issuer: issuer, wits: wits}
}

// workload returns a fresh key of jwsAlg ("ES256" or "EdDSA") and a WIT for it.
func (d *httpsigTD) workload(t *testing.T, sub, jwsAlg string) (crypto.Signer, string) {
	t.Helper()
	var key crypto.Signer
	if jwsAlg == "EdDSA" {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	} else {
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	wit, err := d.issuer.Mint(wpt.WITClaims{Subject: sub, Expiry: time.Now().Add(time.Hour), Key: key.Public(), KeyAlg: jwsAlg})
	if err != nil {
		t.Fatal(err)
	}
	return key, wit
}

func (d *httpsigTD) verifier(t *testing.T, audiences ...string) *httpsig.Verifier {
	t.Helper()
	v, err := httpsig.NewVerifier(httpsig.VerifierConfig{WITs: d.wits, Replay: replay.New(replay.Options{}), Audiences: audiences})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func httpsigJWK(t *testing.T, key any) json.RawMessage {
	t.Helper()
	b, err := (&jose.JSONWebKey{Key: key}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type nodeRequest struct {
	Method  string      `json:"method"`
	URL     string      `json:"url"`
	Headers http.Header `json:"headers"`
}

type nodeResponse struct {
	Status  int         `json:"status"`
	Headers http.Header `json:"headers"`
}

type nodeVerifyOut struct {
	OK       bool   `json:"ok"`
	Base     string `json:"base"`
	DigestOK *bool  `json:"digestOk"`
	Error    string `json:"error"`
}

func rfc9421Alg(t *testing.T, jwsAlg string) httpsig.Algorithm {
	t.Helper()
	a, err := httpsig.AlgorithmFromJWS(jwsAlg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestHTTPSigGoSignedVerifiedByNode: SignRequest / SignResponse output verifies with http-message-signatures, and
// node rebuilds the same signature base byte for byte.
func TestHTTPSigGoSignedVerifiedByNode(t *testing.T) {
	requireNode(t, "http-message-signatures", "structured-headers")
	d := newHTTPSigTD(t)
	for _, jwsAlg := range []string{"ES256", "EdDSA"} {
		t.Run(jwsAlg, func(t *testing.T) {
			clientKey, clientWIT := d.workload(t, httpsigClientSub, jwsAlg)
			serverKey, serverWIT := d.workload(t, httpsigServerSub, jwsAlg)
			client, err := httpsig.NewSigner(clientWIT, clientKey, httpsig.SignerOptions{RequestSignedResponse: true})
			if err != nil {
				t.Fatal(err)
			}
			server, err := httpsig.NewSigner(serverWIT, serverKey, httpsig.SignerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			alg := rfc9421Alg(t, jwsAlg)

			body := []byte(`{"jsonrpc":"2.0","method":"tools/call","id":7}`)
			req, _ := http.NewRequest(http.MethodPost, "https://tool.example.org/mcp/v1?session=abc", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer at-123")
			if err := client.SignRequest(req, body); err != nil {
				t.Fatal(err)
			}
			nreq := nodeRequest{Method: req.Method, URL: req.URL.String(), Headers: req.Header}
			var out nodeVerifyOut
			runNode(t, "httpsig_verify.mjs", map[string]any{
				"request": nreq, "jwk": httpsigJWK(t, clientKey.Public()), "alg": string(alg), "label": httpsig.Label,
				"body":           base64.StdEncoding.EncodeToString(body),
				"requiredFields": []string{"@method", "@request-target", "workload-identity-token", "content-type", "content-digest", "authorization"},
			}, &out)
			if !out.OK || out.DigestOK == nil || !*out.DigestOK {
				t.Fatalf("node refused our request signature: %+v", out)
			}
			if want := httpsigBase(t, httpsig.Message{Request: req}); out.Base != want {
				t.Fatalf("signature bases differ\nnode: %q\n  go: %q", out.Base, want)
			}

			// Tampering is caught by node too.
			tampered := nreq
			tampered.Method = http.MethodDelete
			runNode(t, "httpsig_verify.mjs", map[string]any{
				"request": tampered, "jwk": httpsigJWK(t, clientKey.Public()), "alg": string(alg), "label": httpsig.Label,
			}, &out)
			if out.OK {
				t.Fatal("node accepted a request whose method was changed")
			}

			respBody := []byte(`{"jsonrpc":"2.0","id":7,"result":{}}`)
			resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Request: req}
			if err := server.SignResponse(resp, respBody); err != nil {
				t.Fatal(err)
			}
			runNode(t, "httpsig_verify.mjs", map[string]any{
				"request":  nreq,
				"response": nodeResponse{Status: resp.StatusCode, Headers: resp.Header},
				"jwk":      httpsigJWK(t, serverKey.Public()), "alg": string(alg), "label": httpsig.Label,
				"body":           base64.StdEncoding.EncodeToString(respBody),
				"requiredFields": []string{"@status", "@method", "@request-target", "workload-identity-token", "content-digest"},
			}, &out)
			if !out.OK || out.DigestOK == nil || !*out.DigestOK {
				t.Fatalf("node refused our response signature: %+v", out)
			}
			if want := httpsigBase(t, httpsig.Message{Request: req, Response: resp}); out.Base != want {
				t.Fatalf("response signature bases differ\nnode: %q\n  go: %q", out.Base, want)
			}
		})
	}
}

func httpsigBase(t *testing.T, m httpsig.Message) string {
	t.Helper()
	h := m.Request.Header
	if m.Response != nil {
		h = m.Response.Header
	}
	ins, err := httpsig.ParseSignatureInput(h.Values(wire.HeaderSignatureInput))
	if err != nil || len(ins) != 1 {
		t.Fatalf("ParseSignatureInput: %v", err)
	}
	base, err := httpsig.SignatureBase(m, &ins[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(base)
}

type nodeSignOut struct {
	Headers http.Header `json:"headers"`
	Error   string      `json:"error"`
}

// TestHTTPSigNodeSignedVerifiedByGo: node signs with the profile's covered components and parameters (and a WIT
// minted here); our core Verify and the profile Verifier accept it over a real loopback exchange, and a node-signed
// response verifies with VerifyResponse.
func TestHTTPSigNodeSignedVerifiedByGo(t *testing.T) {
	requireNode(t, "http-message-signatures", "structured-headers")
	d := newHTTPSigTD(t)
	for _, jwsAlg := range []string{"ES256", "EdDSA"} {
		t.Run(jwsAlg, func(t *testing.T) {
			clientKey, clientWIT := d.workload(t, httpsigClientSub, jwsAlg)
			serverKey, serverWIT := d.workload(t, httpsigServerSub, jwsAlg)
			alg := rfc9421Alg(t, jwsAlg)

			type verdict struct {
				Core, Profile, Subject string
			}
			var profile *httpsig.Verifier
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				var v verdict
				if _, err := httpsig.Verify(httpsig.Message{Request: r}, httpsig.Label, alg, clientKey.Public()); err != nil {
					v.Core = err.Error()
				}
				res, err := profile.VerifyRequest(r.Context(), r, body)
				if err != nil {
					v.Profile = err.Error()
				} else {
					v.Subject = res.WIT.Subject
				}
				json.NewEncoder(w).Encode(v)
			}))
			profile = d.verifier(t, "http://"+srv.Listener.Addr().String()+"/api/items")
			srv.Start()
			defer srv.Close()

			url := srv.URL + "/api/items?dry_run=1"
			body := []byte(`{"name":"widget"}`)
			now := time.Now().Unix()
			var signed nodeSignOut
			runNode(t, "httpsig_sign.mjs", map[string]any{
				"request": nodeRequest{Method: http.MethodPost, URL: url, Headers: http.Header{
					"Content-Type": {"application/json"}, wire.HeaderWIT: {clientWIT}}},
				"jwk": httpsigJWK(t, clientKey), "alg": string(alg), "label": httpsig.Label,
				"body":   base64.StdEncoding.EncodeToString(body),
				"fields": []string{"@method", "@request-target", "workload-identity-token", "content-type", "content-digest"},
				"params": []string{"created", "expires", "nonce", "tag", "wimse-aud", "wimse-sign-response"},
				"paramValues": map[string]any{"created": now, "expires": now + 60, "nonce": "node-nonce-1",
					"tag": httpsig.Tag, "wimse-aud": srv.URL + "/api/items", "wimse-sign-response": true},
			}, &signed)
			if signed.Error != "" {
				t.Fatalf("node sign: %s", signed.Error)
			}
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			for k, vs := range signed.Headers {
				req.Header[http.CanonicalHeaderKey(k)] = vs
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var v verdict
			err = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if v.Core != "" || v.Profile != "" || v.Subject != httpsigClientSub {
				t.Fatalf("node-signed request refused: %+v\nheaders: %v", v, req.Header)
			}

			// A node-signed response to that request, verified as the client would.
			respBody := []byte(`{"id":"w-1"}`)
			runNode(t, "httpsig_sign.mjs", map[string]any{
				"request": nodeRequest{Method: req.Method, URL: url, Headers: req.Header},
				"response": nodeResponse{Status: http.StatusCreated, Headers: http.Header{
					"Content-Type": {"application/json"}, wire.HeaderWIT: {serverWIT}}},
				"jwk": httpsigJWK(t, serverKey), "alg": string(alg), "label": httpsig.Label,
				"body": base64.StdEncoding.EncodeToString(respBody),
				"fields": []string{"@status", "workload-identity-token", "content-type", "content-digest",
					`"@method";req`, `"@request-target";req`},
				"params": []string{"created", "expires", "nonce", "tag", "wimse-req-nonce"},
				"paramValues": map[string]any{"created": now, "expires": now + 60, "nonce": "node-nonce-2",
					"tag": httpsig.Tag, "wimse-req-nonce": "node-nonce-1"},
			}, &signed)
			if signed.Error != "" {
				t.Fatalf("node sign response: %s", signed.Error)
			}
			nresp := &http.Response{StatusCode: http.StatusCreated, Header: http.Header{}, Request: req}
			for k, vs := range signed.Headers {
				nresp.Header[http.CanonicalHeaderKey(k)] = vs
			}
			res, err := d.verifier(t).VerifyResponse(context.Background(), nresp, respBody)
			if err != nil {
				t.Fatalf("node-signed response refused: %v\nheaders: %v", err, nresp.Header)
			}
			if res.WIT.Subject != httpsigServerSub || !strings.Contains(strings.Join(res.Covered, " "), `"@method";req`) {
				t.Fatalf("result %+v", res)
			}
		})
	}
}
