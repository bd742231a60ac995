// Package httpsig signs and verifies HTTP messages with RFC 9421 HTTP Message Signatures in the WIMSE
// workload-to-workload profile (draft-ietf-wimse-http-signature-06), with RFC 9530 Content-Digest.
//
// Signer and Verifier implement the profile: the sender's Workload Identity Token rides in Workload-Identity-Token,
// is covered by the signature, and its cnf.jwk key and alg verify the signature. The RFC 9421 core underneath
// (signature base, Signature-Input / Signature parsing, algorithms) and Content-Digest are exported for callers that
// need a plain RFC 9421 signature. Every refusal wraps one autherr sentinel.
package httpsig
