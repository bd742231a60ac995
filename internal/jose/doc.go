// Package jose holds what the project's JOSE users (pkg/wpt, pkg/httpsig, pkg/oauth, pkg/signals, pkg/issuer)
// must agree on: which JWS algorithms are accepted, whether a key fits an algorithm, and how a key is described
// in messages; and the one JWK Set parser and JWKS cache (RemoteKeySet) they load issuers' keys with. The JOSE
// itself is go-jose's; nothing here verifies a JWS.
//
// Import it as ijose next to go-jose.
package jose
