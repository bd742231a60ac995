package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
)

// Kind says what a record describes.
type Kind string

const (
	KindDecision    Kind = "decision"    // a request allowed or refused by a sidecar
	KindRemediation Kind = "remediation" // an action taken because of a signal (revocation, risk change)
	KindController  Kind = "controller"  // an operator's or the controller's own action
)

// Record is one line of the log. Index and Prev are set by the Writer; the rest by the caller.
//
// The leaf hashed into the Merkle tree is the record's line exactly as written (without its newline), so the verifier
// never has to re-encode a record to check it.
type Record struct {
	Index uint64 `json:"i"`
	// Prev is the base64 RFC 6962 leaf hash of record Index-1 ("" for record 0). The Merkle tree is what makes the
	// log tamper-evident; Prev only lets the verifier name which record was edited, rather than only the span between
	// two checkpoints.
	Prev string    `json:"prev,omitempty"`
	Time time.Time `json:"time"`
	Kind Kind      `json:"kind"`

	Direction    string   `json:"direction,omitempty"` // egress or ingress
	Route        string   `json:"route,omitempty"`     // the sidecar route that matched
	Agent        string   `json:"agent,omitempty"`     // the calling workload's identity
	Subject      string   `json:"subject,omitempty"`   // the delegated subject (user) the agent acts for
	SubjectKind  string   `json:"subjectKind,omitempty"`
	Tool         string   `json:"tool,omitempty"` // the tool's identity, when known
	Host         string   `json:"host,omitempty"`
	Method       string   `json:"method,omitempty"`
	Path         string   `json:"path,omitempty"`
	MCPMethod    string   `json:"mcpMethod,omitempty"`
	MCPTool      string   `json:"mcpTool,omitempty"`
	Decision     string   `json:"decision,omitempty"` // allow or deny
	Reason       string   `json:"reason,omitempty"`   // autherr code of a refusal
	PolicyIDs    []string `json:"policyIds,omitempty"`
	RevocationID string   `json:"revocationId,omitempty"`
	Action       string   `json:"action,omitempty"` // what a remediation or controller record did
	Txn          string   `json:"txn,omitempty"`
	Traceparent  string   `json:"traceparent,omitempty"`
	AuthMethod   string   `json:"authMethod,omitempty"`
	Attestation  string   `json:"attestation,omitempty"`
	Risk         string   `json:"risk,omitempty"`
	Status       int      `json:"status,omitempty"`

	// Cause is the security event type URI (or "admin") behind a remediation, and SETJti the jti of the Security
	// Event Token that carried it.
	Cause  string `json:"cause,omitempty"`
	SETJti string `json:"setJti,omitempty"`

	// Actor is who made the controller act: the admin's peer identity on the admin socket (Unix uid, gid, pid),
	// the transmitter of a Security Event Token, the address of a workload attesting.
	Actor string `json:"actor,omitempty"`
}

// Decisions.
const (
	Allow = "allow"
	Deny  = "deny"
)

// MaxRecordBytes bounds one record's line; the parser refuses longer lines rather than buffering them.
const MaxRecordBytes = 64 << 10

// ErrMalformed is wrapped by every parse error of a record, checkpoint or proof.
var ErrMalformed = errors.New("audit: malformed")

// encode returns the record's line without its newline, as the writer writes it (and json.Marshal would).
func (r *Record) encode() ([]byte, error) {
	body, err := r.appendBody(nil)
	if err != nil {
		return nil, err
	}
	b := append([]byte(`{"i":`), strconv.FormatUint(r.Index, 10)...)
	if r.Prev != "" {
		b = append(b, `,"prev":`...)
		b = appendString(b, r.Prev)
	}
	b = append(append(b, ','), body[1:]...)
	if len(b) > MaxRecordBytes {
		return nil, fmt.Errorf("audit: record %d is %d bytes, over %d", r.Index, len(b), MaxRecordBytes)
	}
	return b, nil
}

// ParseRecord parses one line (without its newline). It is strict: one JSON object, known fields only, a kind, a
// time, and a Prev that is empty or a base64 SHA-256 hash.
func ParseRecord(line []byte) (*Record, error) {
	if len(line) > MaxRecordBytes {
		return nil, fmt.Errorf("%w: record of %d bytes, over %d", ErrMalformed, len(line), MaxRecordBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: record: %w", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: record: data after the JSON object", ErrMalformed)
	}
	switch {
	case r.Kind == "":
		return nil, fmt.Errorf("%w: record %d: no kind", ErrMalformed, r.Index)
	case r.Time.IsZero():
		return nil, fmt.Errorf("%w: record %d: no time", ErrMalformed, r.Index)
	}
	if r.Prev != "" {
		if h, err := base64.StdEncoding.DecodeString(r.Prev); err != nil || len(h) != rfc6962.DefaultHasher.Size() {
			return nil, fmt.Errorf("%w: record %d: prev is not a base64 SHA-256 hash", ErrMalformed, r.Index)
		}
	}
	return &r, nil
}

// LeafHash is the RFC 6962 leaf hash of a record's line (without its newline).
func LeafHash(line []byte) []byte { return rfc6962.DefaultHasher.HashLeaf(line) }

var hasherEmptyRoot = rfc6962.DefaultHasher.EmptyRoot()
