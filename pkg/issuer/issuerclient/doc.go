// Package issuerclient is the sidecar's side of the controller's built-in issuer (pkg/issuer): a gRPC Client
// that attests (join token, or peer credentials on a local Unix socket) and renews, and VerifyCredentials, which
// checks what the issuer returned before anything uses it. Refusals come back as their autherr reasons.
// It links none of the issuer's own code (CA, key stores, store), so a sidecar binary carries none of it;
// pkg/identity's IssuerSource builds on it.
package issuerclient
