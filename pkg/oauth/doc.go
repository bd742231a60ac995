// Package oauth is OAuth 2.0 Token Exchange (RFC 8693) for agentauth: a Transaction Token Service that mints
// Txn-Tokens (draft-ietf-oauth-transaction-tokens) and JWT access tokens for legacy APIs, the egress client that
// obtains them with the agent's WIT (proved by a WPT) or SVID as the actor and the user's token as the subject,
// and the ingress TxnVerifier that checks a Txn-Token and hands its delegated subject and transaction id on.
// Every refusal wraps exactly one autherr sentinel; tokens are never logged, only a SHA-256 prefix.
package oauth
