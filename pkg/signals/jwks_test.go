package signals

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	ijose "github.com/agentauth/agentauth/internal/jose"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/signals/signalstest"
)

func TestJWKSRotationOverURL(t *testing.T) {
	clk := newClock()
	tr := newTransmitter(t, clk, func(o *signalstest.Options) { o.CacheControl = "public, max-age=600" })
	recv, sink := newURLReceiver(t, tr, clk)
	hits := func() int { return tr.Counts().JWKSFetches }
	n := 0
	push := func(key jose.JSONWebKey) (int, setErrorBody) {
		n++
		tok, err := Sign(key, SETClaims{Issuer: tr.Issuer, Audience: []string{testAudience}, IssuedAt: clk.Now(),
			JTI: "rot-" + string(rune('a'+n)), Subject: SubjectID{Format: FormatEmail, Email: "a@example.com"},
			Events: map[string]map[string]any{EventSessionRevoked: nil}})
		if err != nil {
			t.Fatal(err)
		}
		return pushTo(t, recv, tok, nil)
	}
	old := tr.Key()
	if code, eb := push(old); code != 202 || hits() != 1 {
		t.Fatalf("first SET: %d %+v, %d fetches", code, eb, hits())
	}
	if code, _ := push(old); code != 202 || hits() != 1 {
		t.Fatalf("cached keys refetched: %d fetches", hits())
	}

	// The transmitter rotates to a new key and drops the old one.
	fresh := newKey(t, "t2", jose.ES256)
	tr.SetKeys(fresh)
	// Right after a fetch, an unknown kid does not cause another one (rate limit): refused.
	if code, eb := push(fresh); code != 400 || eb.Err != CodeInvalidKey || hits() != 1 {
		t.Fatalf("unknown kid within the refetch interval: %d %+v, %d fetches", code, eb, hits())
	}
	clk.Advance(31 * time.Second)
	if code, eb := push(fresh); code != 202 || hits() != 2 {
		t.Fatalf("unknown kid after the interval: %d %+v, %d fetches", code, eb, hits())
	}
	if code, eb := push(old); code != 400 || eb.Err != CodeInvalidKey {
		t.Fatalf("retired key still accepted: %d %+v", code, eb)
	}

	// The set expires after its max-age, clamped to JWKSCacheConfig.MaxAge (5m), and is fetched again.
	clk.Advance(299 * time.Second)
	if code, _ := push(fresh); code != 202 || hits() != 2 {
		t.Fatalf("before max-age: %d fetches", hits())
	}
	clk.Advance(2 * time.Second)
	if code, _ := push(fresh); code != 202 || hits() != 3 {
		t.Fatalf("after max-age: %d fetches", hits())
	}
	// A failed refresh keeps the last good keys (fail-static) for one MinRefresh past MaxAge.
	tr.SetJWKSStatus(http.StatusInternalServerError)
	clk.Advance(301 * time.Second)
	if code, eb := push(fresh); code != 202 || hits() != 4 {
		t.Fatalf("failed refresh: %d %+v, %d fetches", code, eb, hits())
	}
	// Then they are too old to trust: the SET is not refused, it fails on our side (503, delivered again).
	clk.Advance(30 * time.Second)
	if code, _ := push(fresh); code != http.StatusServiceUnavailable || hits() != 5 {
		t.Fatalf("keys past MaxAge+MinRefresh while the JWKS is down: %d, %d fetches", code, hits())
	}
	if got := len(sink.Calls()); got != 6 {
		t.Fatalf("%d applies, want 6", got)
	}
}

func TestJWKSUnreachableIsOurProblem(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL + "/jwks"
	dead.Close()
	f := newFixture(t, func(c *ReceiverConfig) { c.Transmitters[0].JWKSFile, c.Transmitters[0].JWKSURL = "", url })
	tok := f.sign(t, f.claims())
	_, err := f.recv.Process(context.Background(), tok)
	var se *SETError
	if err == nil || errors.As(err, &se) {
		t.Fatalf("Process: %v (want a non-SET error)", err)
	}
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tok))
	req.Header.Set("Content-Type", MediaTypeSET)
	rec := httptest.NewRecorder()
	f.recv.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || len(f.sink.Calls()) != 0 {
		t.Fatalf("status %d, %d applies", rec.Code, len(f.sink.Calls()))
	}
}

// A transmitter's key is offered for a SET's alg only if it fits that alg: the curve for ES*, at least 2048 bits
// for RS* and PS*. The receiver used to check only the alg's prefix, so a P-384 key answered ES256 and a 1024-bit
// RSA key answered RS256.
func TestSelectKeysFitsAlg(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	keys := []jose.JSONWebKey{{Key: &p384.PublicKey, KeyID: "ec"}, {Key: &rsa1024.PublicKey, KeyID: "rsa"}}
	for _, tc := range []struct {
		alg  jose.SignatureAlgorithm
		want string
	}{
		{jose.ES256, ""}, {jose.ES512, ""}, {jose.ES384, "ec"}, {jose.RS256, ""}, {jose.PS256, ""}, {jose.EdDSA, ""},
	} {
		var kids []string
		for _, k := range (&ijose.KeySet{Keys: keys}).Select("", tc.alg) {
			kids = append(kids, k.KeyID)
		}
		if strings.Join(kids, ",") != tc.want {
			t.Errorf("selectKeys(%s) = %v, want %q", tc.alg, kids, tc.want)
		}
	}
}

// A SET signed RS256 with a 1024-bit RSA key from the transmitter's own JWKS is refused: too weak a key to
// trust, whatever the transmitter publishes.
func TestReceiverRefusesWeakRSAKey(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weak := jose.JSONWebKey{Key: priv, KeyID: "weak", Algorithm: string(jose.RS256), Use: "sig"}
	f := newFixture(t, func(c *ReceiverConfig) {
		path := filepath.Join(t.TempDir(), "weak.json")
		if err := os.WriteFile(path, jwksOf(t, weak), 0o600); err != nil {
			t.Fatal(err)
		}
		c.Transmitters[0].JWKSFile = path
	})
	tok, err := Sign(weak, f.claims())
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.recv.Process(context.Background(), tok)
	var se *SETError
	if !errors.As(err, &se) || se.Code != CodeInvalidKey || !errors.Is(err, autherr.ErrUntrustedIssuer) {
		t.Fatalf("SET signed with a 1024-bit key: %v, want invalid_key (no RS256 key)", err)
	}
	if len(f.sink.Calls()) != 0 {
		t.Fatalf("applied %v", f.sink.Calls())
	}
}
