// Package issuer is the controller's built-in identity issuer, the embedded default when no SPIRE server runs.
//
// A CA for one trust domain issues short-lived X.509-SVIDs and WIT-SVIDs to sidecars that attest with a one-time
// join token (or, on a local Unix socket, with their peer credentials) and renew with their current SVID over
// mTLS. Keys live in a KeyStore: PEM files with safe permissions, or a TPM 2.0 through go-tpm. State (the CA
// certificate, issued serials, join tokens) lives in a Store, normally pkg/store's bbolt file. This is the
// controller's side only: sidecars call it through pkg/issuer/issuerclient.
package issuer
