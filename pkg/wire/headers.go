package wire

// Headers on the wire between workloads and sidecars (draft-ietf-wimse-workload-creds, draft-ietf-wimse-wpt,
// draft-ietf-oauth-transaction-tokens, RFC 9421).
const (
	// HeaderWIT carries a Workload Identity Token.
	HeaderWIT = "Workload-Identity-Token"
	// HeaderWPT carries a Workload Proof Token.
	HeaderWPT = "Workload-Proof-Token"
	// HeaderTxnToken carries exactly one Txn-Token (never in Authorization).
	HeaderTxnToken = "Txn-Token"
	// HeaderSignature and HeaderSignatureInput carry RFC 9421 HTTP message signatures.
	HeaderSignature      = "Signature"
	HeaderSignatureInput = "Signature-Input"
)

// Headers the ingress sidecar sets on requests to the tool, from what it verified (see pkg/proxy's doc).
const (
	HeaderWorkloadID       = "X-Agentauth-Workload-Id"
	HeaderAuthMethod       = "X-Agentauth-Auth-Method"
	HeaderDelegatedSubject = "X-Agentauth-Delegated-Subject"
	HeaderSubjectKind      = "X-Agentauth-Subject-Kind"
	HeaderTransactionID    = "X-Agentauth-Transaction-Id"
	HeaderXFCC             = "X-Forwarded-Client-Cert"
)

// ReservedHeaderPrefix names the headers that are ours: every incoming field with it is removed, whatever follows,
// so that only what the sidecar verified, today's headers and any it adds later, reaches the tool under that name.
const ReservedHeaderPrefix = "X-Agentauth-"
