package signals

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// SETClaims describes a SET to Sign, as an SSF transmitter would send it.
type SETClaims struct {
	Issuer   string
	Audience []string
	// JTI defaults to 128 random bits in hex.
	JTI string
	// IssuedAt defaults to now.
	IssuedAt time.Time
	TXN      string
	Subject  SubjectID
	// Events maps an event type URI to the event's members (nil for none).
	Events map[string]map[string]any
}

// Sign makes a SET: a compact JWS with typ secevent+jwt, signed with key, a private JWK whose KeyID and
// Algorithm are set. It is the transmitter side, for tests, demos and cmd/ssf-transmit.
func Sign(key jose.JSONWebKey, c SETClaims) (string, error) {
	if key.IsPublic() || key.Algorithm == "" {
		return "", errors.New("signals: Sign needs a private key with an algorithm")
	}
	if c.Issuer == "" || len(c.Events) == 0 || c.Subject.Format == "" {
		return "", errors.New("signals: Sign needs an issuer, a subject and at least one event")
	}
	if c.JTI == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		c.JTI = hex.EncodeToString(b[:])
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	events := make(map[string]map[string]any, len(c.Events))
	for typ, fields := range c.Events {
		if fields == nil {
			fields = map[string]any{}
		}
		events[typ] = fields
	}
	claims := map[string]any{"iss": c.Issuer, "jti": c.JTI, "iat": c.IssuedAt.Unix(), "sub_id": c.Subject, "events": events}
	switch len(c.Audience) {
	case 0:
	case 1:
		claims["aud"] = c.Audience[0]
	default:
		claims["aud"] = c.Audience
	}
	if c.TXN != "" {
		claims["txn"] = c.TXN
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("signals: SET claims: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key},
		(&jose.SignerOptions{}).WithType("secevent+jwt"))
	if err != nil {
		return "", fmt.Errorf("signals: signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signals: signing SET: %w", err)
	}
	return jws.CompactSerialize()
}
