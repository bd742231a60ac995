package controller

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/peercred"
	"github.com/agentauth/agentauth/pkg/audit"
	"github.com/agentauth/agentauth/pkg/policy"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/xds/xdsserver"
)

// The admin API is JSON over the controller's Unix socket (mode 0600): a process that can open the socket and
// whose user is allowed (adminPeerCheck) administers the controller, as with SPIRE's server socket. agentauthctl is its client; the wire types below are its contract.

// PolicyDoc is one Cedar policy file.
type PolicyDoc struct {
	Source string `json:"source"`
	Cedar  string `json:"cedar"`
}

// PoliciesRequest replaces the whole policy set.
type PoliciesRequest struct {
	Policies []PolicyDoc `json:"policies"`
}

// RevokeRequest revokes a subject, in one of the two ways security events do. By default it ends sessions (like
// CAEP session-revoked): credentials and tokens issued before NotBefore (default: now) are refused, newer ones
// pass; an agent (kind spiffe) renews and resumes, unless NoRenew is set: then its credentials renew nothing, and
// it needs a new join token (for a stolen key or machine). With Disable it withholds the subject (like RISC
// account-disabled): every credential and token, old and new, is refused until the revocation is removed.
// The answer is the stored Revocation; one that refuses no call (a user whom no trusted issuer could have named)
// has a "warning" beside its fields.
type RevokeRequest struct {
	Kind      string     `json:"kind"`
	Value     string     `json:"value"`
	Iss       string     `json:"iss,omitempty"`
	Reason    string     `json:"reason"`
	NotBefore *time.Time `json:"not_before,omitempty"`
	NoRenew   bool       `json:"no_renew,omitempty"`
	Disable   bool       `json:"disable,omitempty"`
}

// Cause event types of revocations made through the admin API. CauseAdminNoRenew marks one whose credentials
// the issuer does not renew (RevokeRequest.NoRenew).
const (
	CauseAdmin        = "admin"
	CauseAdminNoRenew = "admin-no-renew"
	CauseAdminDisable = "admin-disable"
)

// JoinTokenRequest asks for a one-time join token for a SPIFFE ID.
type JoinTokenRequest struct {
	SPIFFEID string        `json:"spiffe_id"`
	TTL      time.Duration `json:"ttl"`
}

// JoinTokenResponse carries the token; it is shown once and stored only hashed.
type JoinTokenResponse struct {
	Token     string    `json:"token"`
	SPIFFEID  string    `json:"spiffe_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SidecarsResponse is GET /v1/sidecars: the version the controller serves of each resource type, and how each
// connected sidecar stream's state compares with it.
type SidecarsResponse struct {
	// Versions maps resource type (its message name: Policy, Revocation, RiskState, TrustBundle) to the version
	// the controller serves.
	Versions map[string]string `json:"versions"`
	Sidecars []SidecarStatus   `json:"sidecars"`
}

// SidecarStatus is one connected sidecar stream.
type SidecarStatus struct {
	// ID is the SPIFFE ID of the sidecar's X.509-SVID; ClaimedID the node id it sent (diagnosis only).
	ID             string       `json:"id"`
	ClaimedID      string       `json:"claimed_id,omitempty"`
	Address        string       `json:"address"`
	StreamID       int64        `json:"stream_id"`
	ConnectedSince time.Time    `json:"connected_since"`
	Types          []TypeStatus `json:"types"`
	LastNACK       *NACKStatus  `json:"last_nack,omitempty"`
}

// TypeStatus is a sidecar's state of one resource type.
type TypeStatus struct {
	Type string `json:"type"`
	// Status is SYNCED, STALE, NACKED or NOT SENT (xdsserver.SyncStatus).
	Status  xdsserver.SyncStatus `json:"status"`
	Acked   string               `json:"acked,omitempty"`
	Pending string               `json:"pending,omitempty"`
	NACKed  string               `json:"nacked,omitempty"`
}

// NACKStatus is the last update a sidecar rejected.
type NACKStatus struct {
	Type    string    `json:"type"`
	Version string    `json:"version"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// IdentitiesResponse is GET /v1/identities: the certificates the issuer issued that have not expired (all that
// are still on record with ?expired=true), and the join tokens not yet pruned, used or not.
type IdentitiesResponse struct {
	Issued     []IssuedIdentity `json:"issued"`
	JoinTokens []JoinTokenInfo  `json:"join_tokens"`
}

// IssuedIdentity is one issued X.509-SVID.
type IssuedIdentity struct {
	SPIFFEID  string    `json:"spiffe_id"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// JoinTokenInfo describes a join token without its secret: ID is the first characters of the hash the store
// keeps, enough to tell tokens apart.
type JoinTokenInfo struct {
	ID        string     `json:"id"`
	SPIFFEID  string     `json:"spiffe_id"`
	ExpiresAt time.Time  `json:"expires_at"`
	Used      bool       `json:"used"`
	UsedAt    *time.Time `json:"used_at,omitempty"`
}

// joinTokenIDLen is how much of a join token's stored hash the admin API shows.
const joinTokenIDLen = 12

// APIError is the body of every admin API error.
type APIError struct {
	Error string `json:"error"`
}

var protoJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false}

func (c *Controller) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/policies", c.listPolicies)
	mux.HandleFunc("PUT /v1/policies", c.applyPolicies)
	mux.HandleFunc("GET /v1/revocations", c.listRevocations)
	mux.HandleFunc("POST /v1/revocations", c.revoke)
	mux.HandleFunc("DELETE /v1/revocations/{id}", c.unrevoke)
	mux.HandleFunc("GET /v1/sidecars", c.listSidecars)
	mux.HandleFunc("GET /v1/identities", c.listIdentities)
	mux.HandleFunc("POST /v1/join-tokens", c.joinToken)
	mux.HandleFunc("GET /v1/backup", c.backup)
	return mux
}

func (c *Controller) listPolicies(w http.ResponseWriter, _ *http.Request) {
	ps, err := c.store.Policies().List()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeProtoList(w, "policies", ps)
}

// applyPolicies compiles the whole set first: a set that does not compile changes nothing, and the answer names
// the file and line of every problem.
func (c *Controller) applyPolicies(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Policy.fromCRD() {
		writeError(w, http.StatusConflict, errPolicyFromCRD)
		return
	}
	var req PoliciesRequest
	if !readJSON(w, r, &req) {
		return
	}
	files := map[string][]byte{}
	for _, d := range req.Policies {
		if d.Source == "" {
			writeError(w, http.StatusBadRequest, errors.New("every policy document needs a source (file name)"))
			return
		}
		if _, dup := files[d.Source]; dup {
			writeError(w, http.StatusBadRequest, fmt.Errorf("policy source %q given twice", d.Source))
			return
		}
		files[d.Source] = []byte(d.Cedar)
	}
	set, err := policy.Compile(files)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	docs := make([]*agentauthv1.Policy, 0, len(req.Policies))
	for _, d := range req.Policies {
		docs = append(docs, &agentauthv1.Policy{Id: d.Source, Cedar: d.Cedar, Source: d.Source})
	}
	if err := c.state.SetPolicies(docs); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ids := make([]string, 0, len(docs))
	for _, d := range docs {
		ids = append(ids, d.GetId())
	}
	c.actions.record(r.Context(), &audit.Record{Action: ActionPolicyApply, Actor: adminActor(r), PolicyIDs: ids,
		Reason: fmt.Sprintf("policy set version %s", set.Version())})
	writeJSON(w, http.StatusOK, map[string]any{"version": set.Version(), "policies": set.Len()})
}

func (c *Controller) listRevocations(w http.ResponseWriter, _ *http.Request) {
	rs, err := c.store.Revocations().List()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeProtoList(w, "revocations", rs)
}

func (c *Controller) revoke(w http.ResponseWriter, r *http.Request) {
	var req RevokeRequest
	if !readJSON(w, r, &req) {
		return
	}
	if err := checkSubject(req.Kind, req.Value); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if req.Reason == "" {
		writeError(w, http.StatusBadRequest, errors.New("reason is required: it reaches every refusal and audit record"))
		return
	}
	cause := CauseAdmin
	switch {
	case req.Disable && (req.NoRenew || req.NotBefore != nil):
		writeError(w, http.StatusBadRequest, errors.New("disable refuses every credential, old and new: no_renew and not_before do not apply"))
		return
	case req.Disable:
		cause = CauseAdminDisable
	case req.NoRenew:
		if req.Kind != "spiffe" {
			writeError(w, http.StatusBadRequest, fmt.Errorf("no_renew applies to kind spiffe (agents renew by SPIFFE ID), not to %q", req.Kind))
			return
		}
		cause = CauseAdminNoRenew
	}
	rev := &agentauthv1.Revocation{
		Id:      "admin-" + randomID(),
		Subject: &agentauthv1.Subject{Kind: req.Kind, Value: revocation.Normal(revocation.Kind(req.Kind), req.Value), Iss: req.Iss},
		Reason:  req.Reason,
		Cause:   &agentauthv1.Cause{EventType: cause},
		Created: timestamppb.Now(),
	}
	if !req.Disable {
		nb := time.Now()
		if req.NotBefore != nil {
			nb = *req.NotBefore
		}
		rev.NotBefore = timestamppb.New(nb)
	}
	warning := ""
	if why := c.resolveUser(rev); why != "" {
		warning = "this revocation refuses no call: " + why
		c.log.Warn("operator revoked a user the token service names nowhere; the revocation refuses nothing",
			zap.String("id", rev.GetId()), zap.String("subject", rev.GetSubject().Key()), zap.String("why", why))
	}
	// UpsertRevocation returns once the revocation is durable in the store; only then is it acknowledged.
	if err := c.state.UpsertRevocation(rev); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	rec := &audit.Record{Action: ActionRevoke, Actor: adminActor(r), RevocationID: rev.GetId(), Reason: rev.GetReason(),
		Cause: cause}
	subjectFields(rec, rev.GetSubject())
	c.actions.record(r.Context(), rec)
	if warning == "" {
		writeProto(w, http.StatusCreated, rev)
		return
	}
	// The answer is the revocation, as without a warning, with "warning" beside its fields.
	b, err := protoJSON.Marshal(rev)
	var m map[string]any
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	m["warning"] = warning
	writeJSON(w, http.StatusCreated, m)
}

func (c *Controller) unrevoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := c.store.Revocations().Get(id); err != nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("revocation %q: %w", id, err))
		return
	}
	if err := c.state.DeleteRevocation(id); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	c.actions.record(r.Context(), &audit.Record{Action: ActionUnrevoke, Actor: adminActor(r), RevocationID: id})
	w.WriteHeader(http.StatusNoContent)
}

// backup streams a consistent snapshot of the state store, a bbolt file: the controller keeps serving and writing
// meanwhile. To restore: stop the controller, put the file in place as dataDir/state.db, start it.
func (c *Controller) backup(w http.ResponseWriter, _ *http.Request) {
	if c.bolt == nil {
		writeError(w, http.StatusNotImplemented, errNoBackup)
		return
	}
	started := false
	_, err := c.bolt.Backup(w, func(size int64) {
		started = true
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	})
	if err == nil {
		return
	}
	c.log.Error("backup failed", zap.Error(err))
	if !started {
		writeError(w, http.StatusInternalServerError, err)
	}
	// Otherwise the body ends short of its Content-Length, which the client sees as an error.
}

func (c *Controller) listSidecars(w http.ResponseWriter, _ *http.Request) {
	// Versions first: a sidecar that ACKs in between shows as STALE for a moment, never as SYNCED on a version
	// that is not the controller's.
	current := c.pub.Versions()
	nodes := c.xds.Nodes()
	resp := SidecarsResponse{Versions: map[string]string{}, Sidecars: make([]SidecarStatus, 0, len(nodes))}
	for _, typeURL := range agentauthv1.ServedTypes() {
		resp.Versions[typeName(typeURL)] = current[typeURL]
	}
	for _, n := range nodes {
		st := SidecarStatus{ID: n.ID, ClaimedID: n.ClaimedID, Address: n.Address, StreamID: n.StreamID,
			ConnectedSince: n.ConnectedSince}
		for _, typeURL := range agentauthv1.ServedTypes() {
			st.Types = append(st.Types, TypeStatus{Type: typeName(typeURL), Status: n.Sync(typeURL, current[typeURL]),
				Acked: n.Acked[typeURL], Pending: n.Pending[typeURL], NACKed: n.NACKed[typeURL]})
		}
		if nk := n.LastNACK; nk != nil {
			st.LastNACK = &NACKStatus{Type: typeName(nk.TypeURL), Version: nk.Version, Message: nk.Message, At: nk.At}
		}
		resp.Sidecars = append(resp.Sidecars, st)
	}
	writeJSON(w, http.StatusOK, resp)
}

// typeName is a type URL's message name (Policy, Revocation, ...).
func typeName(typeURL string) string { return typeURL[strings.LastIndexByte(typeURL, '.')+1:] }

func (c *Controller) listIdentities(w http.ResponseWriter, r *http.Request) {
	expired := r.URL.Query().Get("expired") == "true"
	now := time.Now()
	certs, err := c.store.IssuedCerts().List()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	tokens, err := c.store.JoinTokens().List()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	resp := IdentitiesResponse{Issued: []IssuedIdentity{}, JoinTokens: make([]JoinTokenInfo, 0, len(tokens))}
	for _, ic := range certs {
		na := ic.GetNotAfter().AsTime()
		if !expired && !now.Before(na) {
			continue
		}
		resp.Issued = append(resp.Issued, IssuedIdentity{SPIFFEID: ic.GetSpiffeId(), Serial: ic.GetSerial(),
			NotBefore: ic.GetNotBefore().AsTime(), NotAfter: na})
	}
	slices.SortFunc(resp.Issued, func(a, b IssuedIdentity) int {
		return cmp.Or(strings.Compare(a.SPIFFEID, b.SPIFFEID), a.NotAfter.Compare(b.NotAfter), strings.Compare(a.Serial, b.Serial))
	})
	for _, t := range tokens {
		id := t.GetId()
		if len(id) > joinTokenIDLen {
			id = id[:joinTokenIDLen]
		}
		info := JoinTokenInfo{ID: id, SPIFFEID: t.GetSpiffeId(), ExpiresAt: t.GetExpires().AsTime(), Used: t.GetUsed()}
		if t.GetUsedAt() != nil {
			at := t.GetUsedAt().AsTime()
			info.UsedAt = &at
		}
		resp.JoinTokens = append(resp.JoinTokens, info)
	}
	slices.SortFunc(resp.JoinTokens, func(a, b JoinTokenInfo) int {
		return cmp.Or(strings.Compare(a.SPIFFEID, b.SPIFFEID), a.ExpiresAt.Compare(b.ExpiresAt), strings.Compare(a.ID, b.ID))
	})
	writeJSON(w, http.StatusOK, resp)
}

func (c *Controller) joinToken(w http.ResponseWriter, r *http.Request) {
	var req JoinTokenRequest
	if !readJSON(w, r, &req) {
		return
	}
	id, err := spiffeid.FromString(req.SPIFFEID)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("spiffe_id %q: %w", req.SPIFFEID, err))
		return
	}
	if id.TrustDomain() != c.td {
		writeError(w, http.StatusBadRequest, fmt.Errorf("spiffe_id %q is not in trust domain %q", id, c.td))
		return
	}
	if req.TTL <= 0 {
		req.TTL = time.Hour
	}
	tok, err := c.ca.CreateJoinToken(r.Context(), id, req.TTL)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	c.actions.record(r.Context(), &audit.Record{Action: ActionJoinToken, Actor: adminActor(r), Agent: id.String(),
		Attestation: attestJoinToken, Reason: fmt.Sprintf("valid for %s", req.TTL)})
	writeJSON(w, http.StatusCreated, JoinTokenResponse{Token: tok, SPIFFEID: id.String(), ExpiresAt: time.Now().Add(req.TTL)})
}

// SubjectKinds are the subject kinds a revocation may name.
var SubjectKinds = []string{"spiffe", "user_email", "user_iss_sub", "user_opaque", "session", "jti"}

func checkSubject(kind, value string) error {
	if value == "" {
		return errors.New("value is required")
	}
	switch kind {
	case "spiffe":
		if _, err := spiffeid.FromString(value); err != nil {
			return fmt.Errorf("value %q is not a SPIFFE ID: %w", value, err)
		}
		return nil
	case "user_email", "user_iss_sub", "user_opaque", "session", "jti":
		return nil
	}
	return fmt.Errorf("kind %q is not one of %v", kind, SubjectKinds)
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 8<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, APIError{Error: err.Error()})
}

func writeProto(w http.ResponseWriter, status int, m proto.Message) {
	b, err := protoJSON.Marshal(m)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeProtoList[M proto.Message](w http.ResponseWriter, key string, items []M) {
	raws := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		b, err := protoJSON.Marshal(it)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		raws = append(raws, b)
	}
	writeJSON(w, http.StatusOK, map[string]any{key: raws})
}

// peerCredKey is the request context key of the admin connection's peer credentials (or the error reading them).
type peerCredKey struct{}

type peerCredResult struct {
	cred peercred.Cred
	err  error
}

// withPeerCred records the kernel's credentials of the process at the other end of an admin connection.
func withPeerCred(ctx context.Context, conn net.Conn) context.Context {
	cred, err := peercred.Read(conn)
	return context.WithValue(ctx, peerCredKey{}, peerCredResult{cred, err})
}

// adminPeerCheck serves only peers whose uid is root's, the controller's own or in admin.allowedUIDs, or whose
// gid is in admin.allowedGIDs; any other gets 403. Whoever reaches the socket file is not enough: its mode is the
// first gate, the peer's credentials the second.
func (c *Controller) adminPeerCheck(next http.Handler) http.Handler {
	uids := append([]uint32{0, uint32(os.Geteuid())}, c.cfg.Admin.AllowedUIDs...)
	gids := c.cfg.Admin.AllowedGIDs
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(peerCredKey{}).(peerCredResult)
		switch {
		case p.err != nil:
			c.log.Error("admin: cannot read the peer's credentials; refusing", zap.Error(p.err))
			writeError(w, http.StatusForbidden, errors.New("the admin API could not identify the calling process"))
		case slices.Contains(uids, p.cred.UID) || slices.Contains(gids, p.cred.GID):
			next.ServeHTTP(w, r)
		default:
			c.log.Warn("admin: refused a process whose user is not allowed", zap.Uint32("uid", p.cred.UID),
				zap.Uint32("gid", p.cred.GID), zap.Int32("pid", p.cred.PID))
			writeError(w, http.StatusForbidden, fmt.Errorf("uid %d (gid %d) may not use the admin API: "+
				"admin.allowedUIDs and admin.allowedGIDs list who may, besides root and the controller's user", p.cred.UID, p.cred.GID))
		}
	})
}
