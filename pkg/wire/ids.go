package wire

import "github.com/spiffe/go-spiffe/v2/spiffeid"

// ControllerID is the SPIFFE ID of trust domain td's controller (spiffe://<td>/agentauth/controller). Sidecars
// authorize exactly this ID on the ADS endpoint and as the issuer of Txn-Token keys.
func ControllerID(td spiffeid.TrustDomain) spiffeid.ID {
	id, _ := spiffeid.FromSegments(td, "agentauth", "controller") // constant, valid segments
	return id
}

// IssuerID is the SPIFFE ID the issuer's TLS certificate carries (spiffe://<td>/agentauth/issuer) unless its
// configuration names another.
func IssuerID(td spiffeid.TrustDomain) spiffeid.ID {
	id, _ := spiffeid.FromSegments(td, "agentauth", "issuer") // constant, valid segments
	return id
}

// ReservedIDs are the SPIFFE IDs of trust domain td that only the control plane holds: the issuer's (IssuerID)
// and the controller's (ControllerID). No join token is created for them, and neither attestation nor renewal
// issues them.
func ReservedIDs(td spiffeid.TrustDomain) []spiffeid.ID {
	return []spiffeid.ID{IssuerID(td), ControllerID(td)}
}
