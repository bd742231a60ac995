package xds

import (
	"crypto/x509"
	"fmt"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
)

// Validator checks one resource of a type before it is accepted: on the controller before it is stored, on a
// sidecar before it is applied (a failing check NACKs the update with the returned error and keeps the last good
// state). name is the resource name; res is a *agentauthv1.Policy, *Revocation, *RiskState or *TrustBundle.
type Validator func(name string, res proto.Message) error

// Limits on resource fields, so no single resource can make a sidecar allocate without bound.
const (
	maxIDLen     = 512
	maxCedarLen  = 1 << 20
	maxShortText = 4096
	maxBundleLen = 1 << 20
	// A revocation's delegated_subjects: one per user issuer of the token service, each a prefix + a user's sub
	// (which a user token may make up to 1024 bytes long).
	maxDelegatedSubjects = 256
	maxDelegatedLen      = 2048
)

// NewResource returns an empty message of the type typeURL names, or nil for a type we do not serve.
func NewResource(typeURL string) proto.Message {
	switch typeURL {
	case agentauthv1.PolicyType:
		return new(agentauthv1.Policy)
	case agentauthv1.RevocationType:
		return new(agentauthv1.Revocation)
	case agentauthv1.RiskStateType:
		return new(agentauthv1.RiskState)
	case agentauthv1.TrustBundleType:
		return new(agentauthv1.TrustBundle)
	}
	return nil
}

// Served reports whether typeURL is a type the controller serves and a sidecar accepts.
func Served(typeURL string) bool { return NewResource(typeURL) != nil }

// ResourceName is the name a resource is served under.
func ResourceName(res proto.Message) string {
	switch r := res.(type) {
	case *agentauthv1.Policy:
		return r.GetId()
	case *agentauthv1.Revocation:
		return r.GetId()
	case *agentauthv1.RiskState:
		return r.GetSubject().Key()
	case *agentauthv1.TrustBundle:
		return r.GetTrustDomain()
	}
	return ""
}

// Check is what the controller runs on a resource before it stores it: the structural check every sidecar runs
// on what it receives (so a sidecar refuses nothing the controller stored), then v unless it is nil (e.g. a Cedar
// compile for policies). Errors wrap autherr.ErrMalformed.
func Check(typeURL string, res proto.Message, v Validator) error {
	name := ResourceName(res)
	if err := CheckResource(name, res); err != nil {
		return err
	}
	if v != nil {
		if err := v(name, res); err != nil {
			return fmt.Errorf("%w: %s: %w", autherr.ErrMalformed, Describe(typeURL, name, res), err)
		}
	}
	return nil
}

// CheckResource is the structural check every resource passes on both sides: a name that matches its content,
// bounded sizes, parseable trust anchors. Errors wrap autherr.ErrMalformed.
func CheckResource(name string, res proto.Message) error {
	if name == "" {
		return fmt.Errorf("%w: %T has no name (id, subject or trust domain)", autherr.ErrMalformed, res)
	}
	if got := ResourceName(res); got != name {
		return fmt.Errorf("%w: resource named %q holds %q", autherr.ErrMalformed, name, got)
	}
	if err := checkText("name", name, maxIDLen); err != nil {
		return err
	}
	switch r := res.(type) {
	case *agentauthv1.Policy:
		switch {
		case r.GetCedar() == "":
			return fmt.Errorf("%w: policy %q has no cedar text", autherr.ErrMalformed, name)
		case len(r.GetCedar()) > maxCedarLen:
			return fmt.Errorf("%w: policy %q is %d bytes (limit %d)", autherr.ErrMalformed, name, len(r.GetCedar()), maxCedarLen)
		}
		return checkText("policy source", r.GetSource(), maxShortText)
	case *agentauthv1.Revocation:
		if err := checkSubject(r.GetSubject()); err != nil {
			return fmt.Errorf("revocation %q: %w", name, err)
		}
		if n := len(r.GetDelegatedSubjects()); n > maxDelegatedSubjects {
			return fmt.Errorf("%w: revocation %q has %d delegated_subjects (limit %d)", autherr.ErrMalformed, name, n, maxDelegatedSubjects)
		}
		for _, d := range r.GetDelegatedSubjects() {
			if err := checkText("delegated subject", d, maxDelegatedLen); err != nil {
				return fmt.Errorf("revocation %q: %w", name, err)
			}
		}
		for _, ts := range []struct {
			field string
			t     *timestamppb.Timestamp
		}{{"not_before", r.GetNotBefore()}, {"expires", r.GetExpires()}, {"created", r.GetCreated()}} {
			if ts.t == nil {
				continue
			}
			if err := ts.t.CheckValid(); err != nil {
				return fmt.Errorf("%w: revocation %q: %s: %v", autherr.ErrMalformed, name, ts.field, err)
			}
		}
		return checkCause(r.GetCause(), r.GetReason())
	case *agentauthv1.RiskState:
		if err := checkSubject(r.GetSubject()); err != nil {
			return fmt.Errorf("risk state: %w", err)
		}
		if err := checkText("risk_level", r.GetRiskLevel(), 64); err != nil {
			return err
		}
		if err := checkText("assurance_level", r.GetAssuranceLevel(), 256); err != nil {
			return err
		}
		return checkCause(r.GetCause(), "")
	case *agentauthv1.TrustBundle:
		return checkBundle(r)
	}
	return fmt.Errorf("%w: unsupported resource %T", autherr.ErrMalformed, res)
}

func checkSubject(s *agentauthv1.Subject) error {
	if s.GetKind() == "" || s.GetValue() == "" {
		return fmt.Errorf("%w: subject needs a kind and a value, got %v", autherr.ErrMalformed, s)
	}
	for _, c := range s.GetKind() {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return fmt.Errorf("%w: subject kind %q: only a-z, 0-9 and _ are allowed", autherr.ErrMalformed, s.GetKind())
		}
	}
	if err := checkText("subject kind", s.GetKind(), 64); err != nil {
		return err
	}
	if err := checkText("subject iss", s.GetIss(), maxIDLen); err != nil {
		return err
	}
	return checkText("subject value", s.GetValue(), maxIDLen)
}

func checkCause(c *agentauthv1.Cause, reason string) error {
	for _, f := range [][2]string{{"reason", reason}, {"cause.event_type", c.GetEventType()},
		{"cause.set_jti", c.GetSetJti()}, {"cause.issuer", c.GetIssuer()}} {
		if err := checkText(f[0], f[1], maxShortText); err != nil {
			return err
		}
	}
	return nil
}

func checkBundle(b *agentauthv1.TrustBundle) error {
	td, err := spiffeid.TrustDomainFromString(b.GetTrustDomain())
	if err != nil {
		return fmt.Errorf("%w: trust bundle: trust domain %q: %v", autherr.ErrMalformed, b.GetTrustDomain(), err)
	}
	if len(b.GetX509Authorities()) == 0 && len(b.GetJwtAuthoritiesJwks()) == 0 {
		return fmt.Errorf("%w: trust bundle %s has no authorities", autherr.ErrMalformed, td)
	}
	total := len(b.GetJwtAuthoritiesJwks())
	for i, der := range b.GetX509Authorities() {
		total += len(der)
		if total > maxBundleLen {
			return fmt.Errorf("%w: trust bundle %s is over %d bytes", autherr.ErrMalformed, td, maxBundleLen)
		}
		if _, err := x509.ParseCertificate(der); err != nil {
			return fmt.Errorf("%w: trust bundle %s: x509 authority %d: %v", autherr.ErrMalformed, td, i, err)
		}
	}
	if len(b.GetJwtAuthoritiesJwks()) > 0 {
		if total > maxBundleLen {
			return fmt.Errorf("%w: trust bundle %s is over %d bytes", autherr.ErrMalformed, td, maxBundleLen)
		}
		if _, err := jwtbundle.Parse(td, b.GetJwtAuthoritiesJwks()); err != nil {
			return fmt.Errorf("%w: trust bundle %s: JWT authorities: %v", autherr.ErrMalformed, td, err)
		}
	}
	return nil
}

func checkText(field, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%w: %s is %d bytes (limit %d)", autherr.ErrMalformed, field, len(s), limit)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", autherr.ErrMalformed, field)
	}
	return nil
}

// Describe names a resource in an error message: type, name and, for a policy, the file it came from.
func Describe(typeURL, name string, res proto.Message) string {
	if p, ok := res.(*agentauthv1.Policy); ok && p.GetSource() != "" {
		return fmt.Sprintf("%s %q (%s)", ShortType(typeURL), name, p.GetSource())
	}
	return fmt.Sprintf("%s %q", ShortType(typeURL), name)
}

// ShortType is the message name of a type URL, for error messages and metric labels.
func ShortType(typeURL string) string {
	for i := len(typeURL) - 1; i >= 0; i-- {
		if typeURL[i] == '.' {
			return typeURL[i+1:]
		}
	}
	return typeURL
}
