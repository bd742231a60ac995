// Package revocation is the one place any component asks "is this refused?": the subject kinds (typed), the
// normal form subject values are stored and looked up in, the Refuses rule (not_before, expires, withheld
// credentials), the subjects a call is checked for, and an immutable Index a sidecar's xDS state, the token
// service and the issuer all look revocations up in. The controller writes revocations; this package only reads
// them.
package revocation
