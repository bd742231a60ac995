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
