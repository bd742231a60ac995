package oauth

// Protocol identifiers (RFC 8693 §3, draft-ietf-oauth-transaction-tokens).
const (
	// GrantTypeTokenExchange is the RFC 8693 grant_type.
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"

	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeTxnToken    = "urn:ietf:params:oauth:token-type:txn_token"
	TokenTypeRefresh     = "urn:ietf:params:oauth:token-type:refresh_token"

	// TokenTypeWIT names a WIMSE Workload Identity Token as an actor or subject token. No URI is registered for
	// WITs (specs/oauth-txn-token-exchange.md §2.3), so this is a deployment-private URN of agentauth.
	TokenTypeWIT = "urn:agentauth:params:oauth:token-type:wit"
)

// JOSE typ values of the tokens this package issues and accepts.
const (
	// TypTxnToken is the typ of a Txn-Token (media type application/txntoken+jwt).
	TypTxnToken = "txntoken+jwt"
	// TypAccessToken is the typ of a JWT access token (RFC 9068 §2.1).
	TypAccessToken = "at+jwt"
)

// HTTP header names.
const (
	// HeaderTxnToken carries exactly one Txn-Token (never in Authorization).
	HeaderTxnToken = "Txn-Token"
	// HeaderWIT and HeaderWPT are the WIMSE headers a client authenticates with at the token endpoint.
	HeaderWIT = "Workload-Identity-Token"
	HeaderWPT = "Workload-Proof-Token"
)

// Authentication methods of a token requester, as reported in ExchangeRequest.AuthMethod and the Txn-Token's
// rctx.authn.
const (
	AuthWITWPT      = "wit-wpt"       // WIT proved by a WPT over the token request
	AuthWITMTLS     = "wit-mtls"      // WIT whose subject is the mTLS peer's X.509-SVID ID
	AuthJWTSVIDMTLS = "jwt-svid-mtls" // JWT-SVID whose subject is the mTLS peer's X.509-SVID ID
	AuthMTLS        = "mtls"          // X.509-SVID alone (RFC 8705 style)
)
