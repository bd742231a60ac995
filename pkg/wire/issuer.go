package wire

// ErrorDomain is the gRPC ErrorInfo domain under which the issuer's refusals carry their autherr reason code, so
// its clients can turn a status back into the reason (errors.Is(err, autherr.ErrReplay)).
const ErrorDomain = "agentauth"

// WITAlgs are the algorithms the WIT-SVID profile allows for cnf.jwk.alg (no EdDSA, no HMAC, no none): by default
// the issuer certifies a WIT key only with one of them, and a sidecar allows only those.
var WITAlgs = []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// WIMSEWITAlgs are the algorithms a trust domain may allow for cnf.jwk.alg once it opts out of the strict
// WIT-SVID profile: the profile's list plus EdDSA (Ed25519), which the WIMSE drafts allow for workload keys and
// use in their examples. Peers that follow the SPIFFE profile refuse such WITs, so it is never a default.
var WIMSEWITAlgs = append([]string{"EdDSA"}, WITAlgs...)

// WIT profiles, the names under which configurations choose the cnf.jwk.alg list in force.
const (
	// WITProfileSPIFFE is the SPIFFE WIT-SVID profile: WITAlgs (the default).
	WITProfileSPIFFE = "spiffe"
	// WITProfileWIMSE is the WIMSE drafts' rule: WIMSEWITAlgs.
	WITProfileWIMSE = "wimse"
)
