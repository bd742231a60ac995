package oauth

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/autherr/autherrtest"
	"github.com/agentauth/agentauth/pkg/wire"
)

// TestExchangerCache: a token is reused until RefreshBefore ahead of its expiry, per subject and scope.
func TestExchangerCache(t *testing.T) {
	e := newEnv(t)
	x := e.exchanger(nil)
	ctx := context.Background()
	user := e.idp.token(t, e.clock.Now(), nil)
	req := TokenRequest{SubjectToken: user, SubjectTokenType: TokenTypeAccessToken, Scope: "orders.read"}
	first, err := x.Exchange(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	second, err := x.Exchange(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if first.Value != second.Value || x.Stats().Exchanges != 1 || x.Stats().CacheHits != 1 {
		t.Fatalf("not served from the cache: %+v", x.Stats())
	}
	// Another scope and another subject are other entries.
	if _, err := x.Exchange(ctx, TokenRequest{SubjectToken: user, SubjectTokenType: TokenTypeAccessToken, Scope: "orders.create"}); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Exchange(ctx, TokenRequest{Scope: "orders.read"}); err != nil {
		t.Fatal(err)
	}
	if got := x.Stats().Exchanges; got != 3 {
		t.Fatalf("exchanges = %d, want 3", got)
	}
	// Just before the refresh point the cached token is still used; at it, a new one is fetched.
	e.clock.Add(DefaultTxnTokenLifetime - DefaultRefreshBefore - time.Second)
	if tok, _ := x.Exchange(ctx, req); tok.Value != first.Value {
		t.Fatal("refreshed too early")
	}
	e.clock.Add(time.Second)
	third, err := x.Exchange(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if third.Value == first.Value || x.Stats().Exchanges != 4 {
		t.Fatalf("not refreshed before expiry: %+v", x.Stats())
	}
	if !third.Expiry.After(first.Expiry) {
		t.Error("the new token does not live longer")
	}
}

// TestExchangerCacheShortLived: a token whose lifetime is under twice RefreshBefore is still reused for half
// of it.
func TestExchangerCacheShortLived(t *testing.T) {
	e := newEnv(t, func(c *TokenServiceConfig) { c.TxnTokenLifetime = 40 * time.Second })
	x := e.exchanger(nil)
	for i := 0; i < 2; i++ {
		if _, err := x.Exchange(context.Background(), TokenRequest{Scope: "orders.read"}); err != nil {
			t.Fatal(err)
		}
	}
	if x.Stats().Exchanges != 1 {
		t.Fatalf("short-lived token not reused: %+v", x.Stats())
	}
	e.clock.Add(20 * time.Second)
	if _, err := x.Exchange(context.Background(), TokenRequest{Scope: "orders.read"}); err != nil {
		t.Fatal(err)
	}
	if x.Stats().Exchanges != 2 {
		t.Fatalf("not refreshed at half its life: %+v", x.Stats())
	}
}

// TestExchangerCacheBound: the cache holds at most CacheSize tokens; with caching off every call exchanges.
func TestExchangerCacheBound(t *testing.T) {
	e := newEnv(t)
	x := e.exchanger(func(c *ExchangerConfig) { c.CacheSize = 2 })
	for _, s := range []string{"a", "b", "c", "d"} {
		if _, err := x.Exchange(context.Background(), TokenRequest{Scope: s}); err != nil {
			t.Fatal(err)
		}
	}
	x.mu.Lock()
	n := len(x.entries)
	x.mu.Unlock()
	if n > 2 {
		t.Fatalf("%d entries cached, bound 2", n)
	}
	off := e.exchanger(func(c *ExchangerConfig) { c.CacheSize = -1 })
	for i := 0; i < 2; i++ {
		if _, err := off.Exchange(context.Background(), TokenRequest{Scope: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	if off.Stats().Exchanges != 2 {
		t.Fatalf("caching disabled but %+v", off.Stats())
	}
}

// gate holds the first token request until released, so a test can line concurrent callers up behind it.
type gate struct {
	next    http.Handler
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.arrived)
		<-g.release
	}
	g.next.ServeHTTP(w, r)
}

// TestExchangerSingleflight: N concurrent callers for one key cause one exchange and all get its token; a caller
// that gives up does not fail the others.
func TestExchangerSingleflight(t *testing.T) {
	e := newEnv(t)
	g := &gate{next: e.svc, arrived: make(chan struct{}), release: make(chan struct{})}
	var h http.Handler = g
	e.front.Store(&h)
	x := e.exchanger(nil)
	const n = 16
	req := TokenRequest{Scope: "orders.read"}
	results := make(chan *Token, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := x.Exchange(context.Background(), req)
			results <- tok
			errs <- err
		}()
	}
	// One impatient caller gives up while the exchange is held.
	ctx, cancel := context.WithCancel(context.Background())
	impatient := make(chan error, 1)
	go func() {
		_, err := x.Exchange(ctx, req)
		impatient <- err
	}()
	<-g.arrived
	waitFor(t, func() bool { return x.Stats().Shared == n })
	cancel()
	if err := <-impatient; !errors.Is(err, autherr.ErrUpstream) {
		t.Fatalf("impatient caller: %v", err)
	}
	close(g.release)
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var first string
	for tok := range results {
		if first == "" {
			first = tok.Value
		}
		if tok.Value != first {
			t.Fatal("callers got different tokens")
		}
	}
	if got := x.Stats().Exchanges; got != 1 {
		t.Fatalf("%d exchanges for %d concurrent callers", got, n+1)
	}
}

// waitFor polls cond until it holds; the long limit only keeps a broken test from hanging.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSecondaryCredential: a legacy route gets an RFC 9068 access token as Authorization: Bearer, for the user
// or for the transaction's subject, cached until shortly before expiry.
func TestSecondaryCredential(t *testing.T) {
	e := newEnv(t)
	x := e.exchanger(nil)
	sc, err := NewSecondaryCredential(x, SecondaryConfig{Audience: "https://legacy.example.org", Scope: "orders.read"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	user := e.idp.token(t, e.clock.Now(), nil)
	apply := func(hdr http.Header) string {
		t.Helper()
		r, _ := http.NewRequest(http.MethodGet, "https://legacy.example.org/api", nil)
		for k, v := range hdr {
			r.Header[k] = v
		}
		if err := sc.Apply(ctx, r); err != nil {
			t.Fatal(err)
		}
		v := r.Header.Get("Authorization")
		if len(v) < 8 || v[:7] != "Bearer " {
			t.Fatalf("Authorization = %q", v)
		}
		return v[7:]
	}
	at := apply(http.Header{"Authorization": {"Bearer " + user}})
	s, err := verifyAccessToken(ctx, e, at)
	if err != nil {
		t.Fatal(err)
	}
	if s["sub"] != "alice" || s["client_id"] != agentID.String() || s["aud"] != "https://legacy.example.org" ||
		s["scope"] != "orders.read" || s["jti"] == nil || s["act"].(map[string]any)["sub"] != agentID.String() {
		t.Errorf("access token claims %v", s)
	}
	if again := apply(http.Header{"Authorization": {"Bearer " + user}}); again != at || x.Stats().Exchanges != 1 {
		t.Fatalf("not cached: %+v", x.Stats())
	}
	// With a Txn-Token on the request, its subject and txn go into the access token.
	txn, err := x.Exchange(ctx, TokenRequest{SubjectToken: user, SubjectTokenType: TokenTypeAccessToken, Scope: "orders.read"})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := e.verifier(nil).Verify(ctx, txn.Value)
	s, err = verifyAccessToken(ctx, e, apply(http.Header{wire.HeaderTxnToken: {txn.Value}}))
	if err != nil {
		t.Fatal(err)
	}
	if s["sub"] != "alice" || s["txn"] != info.TransactionID {
		t.Errorf("claims from a Txn-Token: %v", s)
	}
	// Expiry: past the refresh point a new token is fetched.
	e.clock.Add(DefaultAccessTokenLifetime)
	if fresh := apply(http.Header{"Authorization": {"Bearer " + user}}); fresh == at {
		t.Fatal("an access token was reused past its refresh point")
	}
	if _, err := NewSecondaryCredential(x, SecondaryConfig{}); err == nil {
		t.Error("a SecondaryConfig without target was accepted")
	}
	assertNoTokensLogged(t, e, user, at, txn.Value)
}

// verifyAccessToken checks an issued access token's signature and typ with the service's keys.
func verifyAccessToken(ctx context.Context, e *env, tok string) (map[string]any, error) {
	algs, _ := algList(nil)
	s, err := verifyJWS(ctx, "access token", tok, algs, e.svc, "the token service")
	if err != nil {
		return nil, err
	}
	if s.typ != TypAccessToken {
		return nil, errors.New("typ " + s.typ)
	}
	var m map[string]any
	return m, jsonUnmarshal(s.payload, &m)
}

func TestNewExchangerConfigErrors(t *testing.T) {
	e := newEnv(t)
	for name, mod := range map[string]func(*ExchangerConfig){
		"plain http endpoint": func(c *ExchangerConfig) { c.TokenEndpoint = "http://127.0.0.1/token" },
		"no trust domain":     func(c *ExchangerConfig) { c.TrustDomain = spiffeid.TrustDomain{} },
		"no actor":            func(c *ExchangerConfig) { c.Source = nil },
		"negative refresh":    func(c *ExchangerConfig) { c.RefreshBefore = -1 },
	} {
		cfg := ExchangerConfig{TokenEndpoint: e.endpoint, TrustDomain: testTD, Source: witSource{e.agentWIT}}
		mod(&cfg)
		if _, err := NewExchanger(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestUserTokenRepeated: two user-token headers are refused rather than guessed between.
func TestUserTokenRepeated(t *testing.T) {
	e := newEnv(t)
	x := e.exchanger(func(c *ExchangerConfig) { c.UserTokenHeader = "X-User-Token" })
	r, _ := http.NewRequest(http.MethodGet, "http://tool.example.org/", nil)
	r.Header.Add("X-User-Token", "a.b.c")
	r.Header.Add("X-User-Token", "d.e.f")
	autherrtest.Check(t, x.Apply(context.Background(), r, "orders.read"), autherr.ErrMalformed)
	r.Header.Del("X-User-Token")
	r.Header.Add(wire.HeaderTxnToken, "a.b.c")
	r.Header.Add(wire.HeaderTxnToken, "d.e.f")
	autherrtest.Check(t, x.Apply(context.Background(), r, "orders.read"), autherr.ErrMalformed)
}
