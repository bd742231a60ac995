// Command ssf-transmit is a small SSF transmitter for tests and demos: it signs a Security Event Token (CAEP or
// RISC event) and pushes it to a receiver's RFC 8935 endpoint, printing the answer.
//
//	ssf-transmit -gen-key transmitter.pem
//	ssf-transmit -key transmitter.pem -print-jwks > transmitter-jwks.json
//	ssf-transmit -key transmitter.pem -iss https://idp.example.com -aud https://controller.example.com \
//	    -url http://127.0.0.1:8090/ssf/push -event session-revoked -sub-uri spiffe://example.org/agent/planner
//	ssf-transmit ... -event credential-change -sub-email alice@example.com -field change_type=update -reason "password reset"
//	ssf-transmit ... -event session-revoked -sub-iss-sub https://idp.example.com,user-123 -session s-42
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/internal/buildinfo"
	"github.com/agentauth/agentauth/pkg/signals"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ssf-transmit:", err)
		os.Exit(1)
	}
}

// fieldFlags collects repeated -field name=value flags.
type fieldFlags map[string]any

func (f fieldFlags) String() string { return fmt.Sprint(map[string]any(f)) }

// Set takes name=value; a value that parses as JSON (number, object, array, true) is used as such, else as a string.
func (f fieldFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, got %q", s)
	}
	var v any
	if json.Unmarshal([]byte(value), &v) != nil {
		v = value
	}
	f[name] = v
	return nil
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ssf-transmit", flag.ContinueOnError)
	var (
		genKey    = fs.String("gen-key", "", "write a new P-256 signing key to this file (PKCS#8 PEM, mode 0600) and exit")
		keyFile   = fs.String("key", "", "signing key file (PKCS#8 PEM: P-256, P-384, RSA or Ed25519)")
		kid       = fs.String("kid", "", "key id (default: the key's RFC 7638 thumbprint)")
		printJWKS = fs.Bool("print-jwks", false, "print the public JWK Set for the receiver's configuration and exit")
		iss       = fs.String("iss", "", "issuer (the receiver's configured transmitter)")
		aud       = fs.String("aud", "", "audience, comma-separated")
		target    = fs.String("url", "", "receiver push endpoint")
		event     = fs.String("event", "", "event type: a short name such as session-revoked, credential-compromise, risk-level-change, or a full URI")
		subURI    = fs.String("sub-uri", "", "subject: uri format (an agent's SPIFFE ID)")
		subEmail  = fs.String("sub-email", "", "subject: email format")
		subIssSub = fs.String("sub-iss-sub", "", "subject: iss_sub format, as ISS,SUB")
		subOpaque = fs.String("sub-opaque", "", "subject: opaque format")
		subPhone  = fs.String("sub-phone", "", "subject: phone_number format")
		session   = fs.String("session", "", "make the subject complex, with this opaque session id")
		device    = fs.String("device", "", "make the subject complex, with this opaque device id")
		reason    = fs.String("reason", "", "reason_admin (English)")
		initiator = fs.String("initiator", "admin", "initiating_entity: admin, user, policy or system")
		eventTime = fs.String("event-time", "", "event_timestamp as RFC 3339 or Unix seconds (default now)")
		jti       = fs.String("jti", "", "jti (default random)")
		txn       = fs.String("txn", "", "txn claim")
		authz     = fs.String("authorization", "", "Authorization header for the push (the stream's authorization_header)")
		caFile    = fs.String("ca", "", "PEM CA certificates to trust for an https push endpoint (default: system roots)")
		printSET  = fs.Bool("print", false, "print the signed SET instead of pushing it")
		timeout   = fs.Duration("timeout", 10*time.Second, "push timeout")
		version   = fs.Bool("version", false, "print the version (from the build info) and exit")
	)
	fields := fieldFlags{}
	fs.Var(fields, "field", "event member name=value (repeatable; JSON values allowed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version {
		_, err := fmt.Fprintln(out, buildinfo.Read().Line("ssf-transmit"))
		return err
	}
	if *genKey != "" {
		return writeNewKey(*genKey, out)
	}
	if *keyFile == "" {
		return errors.New("-key is required (create one with -gen-key)")
	}
	key, err := loadKey(*keyFile, *kid)
	if err != nil {
		return err
	}
	if *printJWKS {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}})
	}

	if *iss == "" || *aud == "" || *event == "" || (*target == "" && !*printSET) {
		return errors.New("-iss, -aud, -event and -url (or -print) are required")
	}
	eventURI, ok := signals.EventURI(*event)
	if !ok {
		if !strings.Contains(*event, ":") {
			return fmt.Errorf("unknown event %q; known: %s", *event, knownShortNames())
		}
		eventURI = *event // any URI: lets a demo show that unknown events are accepted and ignored
	}
	subject, err := buildSubject(*subURI, *subEmail, *subIssSub, *subOpaque, *subPhone, *session, *device)
	if err != nil {
		return err
	}
	at := time.Now()
	if *eventTime != "" {
		if at, err = parseTime(*eventTime); err != nil {
			return err
		}
	}
	members := defaultFields(eventURI)
	if !strings.Contains(eventURI, "/ssf/event-type/") {
		members["event_timestamp"] = at.Unix()
		members["initiating_entity"] = *initiator
		if *reason != "" {
			members["reason_admin"] = map[string]string{"en": *reason}
		}
	}
	for k, v := range fields {
		members[k] = v
	}
	set, err := signals.Sign(key, signals.SETClaims{Issuer: *iss, Audience: strings.Split(*aud, ","), JTI: *jti, TXN: *txn,
		Subject: subject, Events: map[string]map[string]any{eventURI: members}})
	if err != nil {
		return err
	}
	if *printSET {
		_, err := fmt.Fprintln(out, set)
		return err
	}
	client, err := httpClient(*caFile, *timeout)
	if err != nil {
		return err
	}
	return push(client, *target, *authz, set, out)
}

// defaultFields are the required members of each event type, so a demo needs only -event; -field overrides.
func defaultFields(uri string) map[string]any {
	switch uri {
	case signals.EventCredentialChange:
		return map[string]any{"credential_type": "x509", "change_type": "revoke"}
	case signals.EventCredentialCompromise:
		return map[string]any{"credential_type": "x509"}
	case signals.EventRiskLevelChange:
		return map[string]any{"principal": "USER", "current_level": "HIGH"}
	case signals.EventAssuranceLevelChange:
		return map[string]any{"namespace": "NIST-AAL", "current_level": "aal1", "change_direction": "decrease"}
	case signals.EventDeviceComplianceChange:
		return map[string]any{"previous_status": "compliant", "current_status": "not-compliant"}
	case signals.EventTokenClaimsChange:
		return map[string]any{"claims": map[string]any{}}
	case signals.EventStreamUpdated:
		return map[string]any{"status": "disabled"}
	}
	return map[string]any{}
}

// buildSubject makes the sub_id: exactly one principal, made complex when a session or device is named.
func buildSubject(uri, email, issSub, opaque, phone, session, device string) (signals.SubjectID, error) {
	var principals []signals.SubjectID
	role := "user"
	if uri != "" {
		principals = append(principals, signals.SubjectID{Format: signals.FormatURI, URI: uri})
		role = "application"
	}
	if email != "" {
		principals = append(principals, signals.SubjectID{Format: signals.FormatEmail, Email: email})
	}
	if issSub != "" {
		i, s, ok := strings.Cut(issSub, ",")
		if !ok || i == "" || s == "" {
			return signals.SubjectID{}, fmt.Errorf("-sub-iss-sub wants ISS,SUB, got %q", issSub)
		}
		principals = append(principals, signals.SubjectID{Format: signals.FormatIssSub, Iss: i, Sub: s})
	}
	if opaque != "" {
		principals = append(principals, signals.SubjectID{Format: signals.FormatOpaque, ID: opaque})
	}
	if phone != "" {
		principals = append(principals, signals.SubjectID{Format: signals.FormatPhoneNumber, PhoneNumber: phone})
	}
	if len(principals) != 1 {
		return signals.SubjectID{}, errors.New("name exactly one subject: -sub-uri, -sub-email, -sub-iss-sub, -sub-opaque or -sub-phone")
	}
	if session == "" && device == "" {
		return principals[0], nil
	}
	members := map[string]signals.SubjectID{role: principals[0]}
	if session != "" {
		members["session"] = signals.SubjectID{Format: signals.FormatOpaque, ID: session}
	}
	if device != "" {
		members["device"] = signals.SubjectID{Format: signals.FormatOpaque, ID: device}
	}
	return signals.SubjectID{Format: signals.FormatComplex, Members: members}, nil
}

func parseTime(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("-event-time %q is neither RFC 3339 nor Unix seconds", s)
	}
	return t, nil
}

func knownShortNames() string {
	var names []string
	for _, uri := range signals.KnownEventTypes() {
		names = append(names, signals.ShortEventName(uri))
	}
	return strings.Join(names, ", ")
}

func push(client *http.Client, target, authz, set string, out io.Writer) error {
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(set))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", signals.MediaTypeSET)
	req.Header.Set("Accept", "application/json")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(out, "%s %s\n", resp.Proto, resp.Status)
	if len(body) > 0 {
		fmt.Fprintln(out, strings.TrimSpace(string(body)))
	}
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}

func httpClient(caFile string, timeout time.Duration) (*http.Client, error) {
	client := &http.Client{Timeout: timeout}
	if caFile == "" {
		return client, nil
	}
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return client, nil
}

// writeNewKey creates a P-256 key file; it never overwrites an existing file.
func writeNewKey(path string, out io.Writer) error {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "wrote P-256 signing key to %s\n", path)
	return err
}

// loadKey reads a PKCS#8 (or SEC 1 EC) private key and returns it as a signing JWK with its algorithm and kid.
func loadKey(path, kid string) (jose.JSONWebKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return jose.JSONWebKey{}, fmt.Errorf("%s: no PEM block", path)
	}
	var priv any
	switch block.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		err = fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("%s: %w", path, err)
	}
	var alg jose.SignatureAlgorithm
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		case elliptic.P521():
			alg = jose.ES512
		}
	case *rsa.PrivateKey:
		alg = jose.RS256
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	}
	if alg == "" {
		return jose.JSONWebKey{}, fmt.Errorf("%s: unsupported key type %T", path, priv)
	}
	key := jose.JSONWebKey{Key: priv, Algorithm: string(alg), Use: "sig", KeyID: kid}
	if key.KeyID == "" {
		pub := key.Public()
		tp, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return jose.JSONWebKey{}, err
		}
		key.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	}
	return key, nil
}
