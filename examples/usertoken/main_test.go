package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestMintVerifies: a token minted with a new key verifies with the printed JWK Set and carries the claims asked
// for. (test/e2e's TestUserTokenMinter shows the controller's token service accepts it.)
func TestMintVerifies(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "idp.pem")
	if err := run([]string{"-gen-key", key}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	var jwksOut, tokOut bytes.Buffer
	if err := run([]string{"-key", key, "-print-jwks"}, &jwksOut, time.Now()); err != nil {
		t.Fatal(err)
	}
	var jwks jose.JSONWebKeySet
	if err := json.Unmarshal(jwksOut.Bytes(), &jwks); err != nil || len(jwks.Keys) != 1 || !jwks.Keys[0].IsPublic() {
		t.Fatalf("JWK Set %s: %v", jwksOut.String(), err)
	}
	now := time.Now().Truncate(time.Second)
	err := run([]string{"-key", key, "-iss", "https://idp.example.com", "-sub", "alice@example.com",
		"-aud", "agentauth,other", "-ttl", "5m", "-scope", "weather.read", "-typ", "at+jwt", "-claim", "department=hr"}, &tokOut, now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(strings.TrimSpace(tokOut.String()), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := tok.Headers[0]
	if h.KeyID != jwks.Keys[0].KeyID || h.ExtraHeaders[jose.HeaderType] != "at+jwt" {
		t.Fatalf("header kid %q typ %v, want kid %q typ at+jwt", h.KeyID, h.ExtraHeaders[jose.HeaderType], jwks.Keys[0].KeyID)
	}
	var std jwt.Claims
	var extra struct {
		Scope      string `json:"scope"`
		Department string `json:"department"`
	}
	if err := tok.Claims(jwks.Keys[0].Key, &std, &extra); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if err := std.Validate(jwt.Expected{Issuer: "https://idp.example.com", Subject: "alice@example.com",
		AnyAudience: jwt.Audience{"agentauth"}, Time: now}); err != nil {
		t.Fatal(err)
	}
	if std.Expiry.Time() != now.Add(5*time.Minute) || extra.Scope != "weather.read" || extra.Department != "hr" {
		t.Fatalf("claims %+v %+v", std, extra)
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "idp.pem")
	if err := run([]string{"-gen-key", key}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-iss", "i", "-sub", "s", "-aud", "a"},
		{"-key", key, "-sub", "s", "-aud", "a"},
		{"-key", key, "-iss", "i", "-sub", "s", "-aud", "a", "-ttl", "-1m"},
		{"-key", key, "-iss", "i", "-sub", "s", "-aud", "a", "-claim", "novalue"},
	} {
		if err := run(args, &bytes.Buffer{}, time.Now()); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
