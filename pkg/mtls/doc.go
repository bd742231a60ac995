// Package mtls builds tls.Configs for SPIFFE mutual TLS on top of go-spiffe's spiffetls/tlsconfig.
//
// Every handshake asks the Source for the current X.509-SVID and bundle, so a rotation takes effect on the next
// handshake while open connections keep running. Authorizers decide which peer SPIFFE IDs are accepted and say
// why one is refused; PeerID reads the authenticated peer off a connection. A connection is authenticated only by
// the certificates of its handshake, so it must end with them: PeerNotAfter, RetireAt and GRPCCredentials say when
// and make it so.
package mtls
