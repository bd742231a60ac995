// Package proxy is the sidecar's data plane: listeners, the egress and ingress request paths, and upstream
// connection pools, independent of where credentials and policy come from (those plug in through ProofSigner,
// Authenticator, RevocationChecker, Authorizer, TLSConfigFunc, DecisionSink and Metrics).
//
// Egress (agent side) routes a request by destination, runs an ordered chain of EgressSteps on it as it will be
// sent — traceparent, tokens, the route's proofs — and forwards it, over mTLS when the route says so. Ingress (tool
// side) runs an ordered chain of Steps — authenticate, bind mTLS peer to WIT, revocation, authorization — and
// forwards only what a step allowed. pkg/proxy/steps holds the concrete steps and builds both chains. One place writes every refusal, as
// {"error": "<autherr code>", "error_description": "..."} with Cache-Control: no-store, and every decision, allowed
// or not, reaches the DecisionSink and Metrics exactly once. HTTP/1.1, HTTP/2 over TLS, h2c, gRPC (trailers, bidi streams), SSE and WebSocket pass through.
//
// Headers to the tool. There is no standard for the sidecar→tool hop, so these are ours. Ingress deletes every
// inbound copy of them — any case, repeated, in trailers, and spelled with '_' for '-' — then sets them from
// what it verified:
//
//	X-Agentauth-Workload-Id        verified workload identifier (WIT sub, or mTLS peer SPIFFE ID)
//	X-Agentauth-Auth-Method        mtls | wit-wpt | wit-httpsig
//	X-Agentauth-Subject-Kind       with a verified Txn-Token: user | self | system (who its sub is to the caller)
//	X-Agentauth-Delegated-Subject  sub of a verified Txn-Token when someone delegated (user, system; not self)
//	X-Agentauth-Transaction-Id     txn of a verified Txn-Token, when present
//	X-Forwarded-Client-Cert        Envoy SANITIZE_SET element when the peer sent a certificate:
//	                               By=<our id>;Hash=<hex SHA-256 of peer leaf DER>;URI=<peer SPIFFE ID>
//
// The WIMSE proof headers (Workload-Identity-Token, Workload-Proof-Token, Signature, Signature-Input) are
// consumed by ingress and not forwarded, so a tool never sees an unverified proof it might be tempted to trust
// (a Signature-Input for some other label goes too). Txn-Token, Authorization and Content-Digest are forwarded
// unchanged: the Txn-Token draft requires downstream propagation. Egress also strips our identity headers, and
// on proof routes replaces any proof headers the agent sent. Ingress sets X-Forwarded-For/-Host/-Proto afresh
// (inbound copies are dropped); egress sends none.
//
// Request paths must be canonical (no ".", ".." or empty segments, no backslash, also once a segment's ";params"
// are dropped as servlet containers do; 400 otherwise) because routes match by path prefix and the upstream would
// otherwise resolve "/public/../admin" or "/public/..;/admin" under another route's rules.
//
// Ingress passes only WebSocket upgrades: after a 101 the connection is spliced and nothing on it is decided again,
// so any other Upgrade (h2c above all) is dropped and the request is served as plain HTTP/1.1. Identity headers are
// set on the outgoing request, after hop-by-hop removal, so a Connection header cannot name them away. Egress proof
// routes need a fixed upstream: a proof goes only where its route says, never to whatever address the agent chose.
// X-HTTP-Method-Override (and X-HTTP-Method, X-Method-Override) is refused on ingress: frameworks that honour it
// would run another method than the one policy decided.
package proxy
