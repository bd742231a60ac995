package wire

// AuthMethod is how a workload proved its identity: to an ingress sidecar (AuthMTLS, AuthWITWPT, AuthWITHTTPSig)
// or to the token service (AuthWITWPT, AuthWITMTLS, AuthJWTSVIDMTLS, AuthMTLS). It is sent to tools in
// HeaderAuthMethod, given to policy as context.auth_method and recorded in Txn-Tokens and audit records.
type AuthMethod string

const (
	AuthMTLS        AuthMethod = "mtls"          // X.509-SVID over mutual TLS (RFC 8705 style at the token service)
	AuthWITWPT      AuthMethod = "wit-wpt"       // WIMSE Workload Identity Token + Workload Proof Token
	AuthWITHTTPSig  AuthMethod = "wit-httpsig"   // WIMSE Workload Identity Token + HTTP Message Signature
	AuthWITMTLS     AuthMethod = "wit-mtls"      // WIT whose subject is the mTLS peer's X.509-SVID ID
	AuthJWTSVIDMTLS AuthMethod = "jwt-svid-mtls" // JWT-SVID whose subject is the mTLS peer's X.509-SVID ID
)
