package signals

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// TestSetTransmitters swaps the trusted set between deliveries: each step sets the transmitters (or fails to,
// leaving the set in force), then pushes SETs signed by each key and checks which are accepted.
func TestSetTransmitters(t *testing.T) {
	const issB = "https://b.example.com"
	keyA, keyA2, keyB := newKey(t, "a", jose.ES256), newKey(t, "a2", jose.EdDSA), newKey(t, "b", jose.RS256)
	a := TransmitterConfig{Issuer: testIssuer, Audience: []string{testAudience}, JWKS: jwksOf(t, keyA), JWKSSource: "secret a"}
	b := TransmitterConfig{Issuer: issB, Audience: []string{testAudience}, JWKS: jwksOf(t, keyB)}
	rotatedA := with2(a, func(c *TransmitterConfig) { c.JWKS = jwksOf(t, keyA2) })
	authA := with2(a, func(c *TransmitterConfig) { c.PushAuthorization = "Bearer a" })
	type delivery struct {
		iss  string
		key  jose.JSONWebKey
		auth string
		want string // "" accepted, else the RFC 8935 error code
	}
	steps := []struct {
		name    string
		set     []TransmitterConfig
		wantErr bool
		deliver []delivery
	}{
		{"none trusted", nil, false, []delivery{
			{testIssuer, keyA, "", CodeInvalidIssuer}, {issB, keyB, "", CodeInvalidIssuer}}},
		{"a", []TransmitterConfig{a}, false, []delivery{
			{testIssuer, keyA, "", ""}, {issB, keyB, "", CodeInvalidIssuer}}},
		{"a and b", []TransmitterConfig{a, b}, false, []delivery{
			{testIssuer, keyA, "", ""}, {issB, keyB, "", ""}, {issB, keyA, "", CodeInvalidKey}}},
		{"bad JWKS leaves a and b", []TransmitterConfig{b, with2(a, func(c *TransmitterConfig) { c.JWKS = []byte(`{"keys":[]}`) })}, true, []delivery{
			{testIssuer, keyA, "", ""}, {issB, keyB, "", ""}}},
		{"issuer twice leaves a and b", []TransmitterConfig{b, b}, true, []delivery{
			{testIssuer, keyA, "", ""}}},
		{"a removed", []TransmitterConfig{b}, false, []delivery{
			{testIssuer, keyA, "", CodeInvalidIssuer}, {issB, keyB, "", ""}}},
		{"a back with a rotated key", []TransmitterConfig{b, rotatedA}, false, []delivery{
			{testIssuer, keyA, "", CodeInvalidKey}, {testIssuer, keyA2, "", ""}}},
		{"a with push authorization", []TransmitterConfig{authA}, false, []delivery{
			{testIssuer, keyA, "", CodeAuthenticationFailed}, {testIssuer, keyA, "Bearer a", ""},
			{issB, keyB, "", CodeInvalidIssuer}}},
		{"all removed", []TransmitterConfig{}, false, []delivery{
			{testIssuer, keyA, "Bearer a", CodeInvalidIssuer}}},
	}
	f := newFixture(t, func(c *ReceiverConfig) { c.Transmitters = nil })
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := f.recv.SetTransmitters(st.set); (err != nil) != st.wantErr {
				t.Fatalf("SetTransmitters: %v, want error %v", err, st.wantErr)
			}
			for i, d := range st.deliver {
				c := f.claims()
				c.Issuer = d.iss
				var hdr map[string]string
				if d.auth != "" {
					hdr = map[string]string{"Authorization": d.auth}
				}
				code, eb := pushTo(t, f.recv, f.signWith(t, d.key, c), hdr)
				switch {
				case d.want == "" && code != 202:
					t.Errorf("delivery %d (%s, kid %s): %d %s, want 202", i, d.iss, d.key.KeyID, code, eb.Err)
				case d.want != "" && eb.Err != d.want:
					t.Errorf("delivery %d (%s, kid %s): %d %q, want %s", i, d.iss, d.key.KeyID, code, eb.Err, d.want)
				}
			}
		})
	}
}

// TestSetTransmittersKeepsUnchangedKeys: a swap that leaves a transmitter as it was keeps its key cache, so a
// JWKS file read at start is not read again (here: it is gone, and SETs still verify).
func TestSetTransmittersKeepsUnchangedKeys(t *testing.T) {
	f := newFixture(t)
	a := f.recv.trusted.Load().byIssuer[testIssuer]
	if err := f.recv.SetTransmitters([]TransmitterConfig{a.TransmitterConfig}); err != nil {
		t.Fatal(err)
	}
	if f.recv.trusted.Load().byIssuer[testIssuer] != a {
		t.Fatal("unchanged transmitter rebuilt")
	}
	b := with2(a.TransmitterConfig, func(c *TransmitterConfig) { c.Audience = []string{"other"} })
	if err := f.recv.SetTransmitters([]TransmitterConfig{b}); err != nil {
		t.Fatal(err)
	}
	if f.recv.trusted.Load().byIssuer[testIssuer] == a {
		t.Fatal("changed transmitter kept")
	}
}

// TestSetTransmittersWhileDelivering swaps between two sets while SETs arrive (run with -race): each SET is
// judged against one whole set, so it is accepted or refused for its issuer, never for a key or audience of a
// mix of the two (keyA with set two's audience would be invalid_audience).
func TestSetTransmittersWhileDelivering(t *testing.T) {
	keyA, keyA2 := newKey(t, "a", jose.ES256), newKey(t, "a2", jose.ES256)
	one := TransmitterConfig{Issuer: testIssuer, Audience: []string{testAudience}, JWKS: jwksOf(t, keyA)}
	two := TransmitterConfig{Issuer: testIssuer, Audience: []string{"https://other.example.com"}, JWKS: jwksOf(t, keyA2)}
	f := newFixture(t, func(c *ReceiverConfig) { c.Transmitters = []TransmitterConfig{one} })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			set := []TransmitterConfig{one}
			switch i % 3 {
			case 1:
				set = []TransmitterConfig{two}
			case 2:
				set = nil
			}
			if err := f.recv.SetTransmitters(set); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for i := range 200 {
		c := f.claims()
		c.JTI = fmt.Sprint("jti-", i)
		_, err := f.recv.Process(context.Background(), f.signWith(t, keyA, c))
		var se *SETError
		if err != nil && (!errors.As(err, &se) || (se.Code != CodeInvalidIssuer && se.Code != CodeInvalidKey)) {
			t.Errorf("SET %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
}

// signWith signs c with key.
func (f *fixture) signWith(t testing.TB, key jose.JSONWebKey, c SETClaims) string {
	t.Helper()
	tok, err := Sign(key, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
