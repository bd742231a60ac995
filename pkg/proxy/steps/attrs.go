package steps

// Identity attributes (proxy.Identity.Attrs) the authenticators and the Txn-Token step set for the revocation and
// policy steps.
const (
	AttrIssuedAt          = "issued_at"           // time.Time: when the caller's credential (WIT) was issued
	AttrWITJTI            = "wit_jti"             // string
	AttrDelegatedClaims   = "delegated_claims"    // map[string]string
	AttrDelegatedIssuedAt = "delegated_issued_at" // time.Time
)
