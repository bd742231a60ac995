package wire

// ErrorDomain is the gRPC ErrorInfo domain under which the issuer's refusals carry their autherr reason code, so
// its clients can turn a status back into the reason (errors.Is(err, autherr.ErrReplay)).
const ErrorDomain = "agentauth"

// WITAlgs are the algorithms the WIT-SVID profile allows for cnf.jwk.alg (no EdDSA, no HMAC, no none): the issuer
// certifies a WIT key only with one of them, and a sidecar configures only those.
var WITAlgs = []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
