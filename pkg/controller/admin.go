package controller

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/policy"
)

// The admin API is JSON over the controller's Unix socket (mode 0600): whoever can open the socket administers the
// controller, as with SPIRE's server socket. agentauthctl is its client; the wire types below are its contract.

// PolicyDoc is one Cedar policy file.
type PolicyDoc struct {
	Source string `json:"source"`
	Cedar  string `json:"cedar"`
}

// PoliciesRequest replaces the whole policy set.
type PoliciesRequest struct {
	Policies []PolicyDoc `json:"policies"`
}

// RevokeRequest revokes a subject's credentials issued before NotBefore (default: now). An agent (kind spiffe)
// renews revoked credentials and resumes, unless NoRenew is set: then they renew nothing, and the agent needs a
// new join token (for a stolen key or machine).
type RevokeRequest struct {
	Kind      string     `json:"kind"`
	Value     string     `json:"value"`
	Iss       string     `json:"iss,omitempty"`
	Reason    string     `json:"reason"`
	NotBefore *time.Time `json:"not_before,omitempty"`
	NoRenew   bool       `json:"no_renew,omitempty"`
}

// Cause event types of revocations made through the admin API. CauseAdminNoRenew marks one whose credentials
// the issuer does not renew (RevokeRequest.NoRenew).
const (
	CauseAdmin        = "admin"
	CauseAdminNoRenew = "admin-no-renew"
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
	mux.HandleFunc("POST /v1/join-tokens", c.joinToken)
	mux.HandleFunc("GET /v1/backup", c.backup)
	return mux
}

func (c *Controller) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if _, err := c.store.Version(); err != nil {
			writeError(w, http.StatusServiceUnavailable, fmt.Errorf("store: %w", err))
			return
		}
		if err := probeWritable(c.cfg.DataDir); err != nil {
			writeError(w, http.StatusServiceUnavailable, fmt.Errorf("dataDir is not writable: %w", err))
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{}))
	return mux
}

// probeWritable creates, syncs and removes a small file in dir. Reading the store says nothing about writing:
// bbolt reads from its memory map, and the controller also writes bundle.pem and ssf-streams.json in dir.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".readyz-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write([]byte("ok"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
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
	if err := c.pub.SetPolicies(docs); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
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
	if req.NoRenew {
		if req.Kind != "spiffe" {
			writeError(w, http.StatusBadRequest, fmt.Errorf("no_renew applies to kind spiffe (agents renew by SPIFFE ID), not to %q", req.Kind))
			return
		}
		cause = CauseAdminNoRenew
	}
	nb := time.Now()
	if req.NotBefore != nil {
		nb = *req.NotBefore
	}
	rev := &agentauthv1.Revocation{
		Id:        "admin-" + randomID(),
		Subject:   &agentauthv1.Subject{Kind: req.Kind, Value: agentauthv1.NormalValue(req.Kind, req.Value), Iss: req.Iss},
		NotBefore: timestamppb.New(nb),
		Reason:    req.Reason,
		Cause:     &agentauthv1.Cause{EventType: cause},
		Created:   timestamppb.Now(),
	}
	// UpsertRevocation returns once the revocation is durable in the store; only then is it acknowledged.
	if err := c.pub.UpsertRevocation(rev); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeProto(w, http.StatusCreated, rev)
}

func (c *Controller) unrevoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := c.store.Revocations().Get(id); err != nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("revocation %q: %w", id, err))
		return
	}
	if err := c.pub.DeleteRevocation(id); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// backup streams a consistent snapshot of the state store, a bbolt file: the controller keeps serving and writing
// meanwhile. To restore: stop the controller, put the file in place as dataDir/state.db, start it.
func (c *Controller) backup(w http.ResponseWriter, _ *http.Request) {
	started := false
	_, err := c.store.Backup(w, func(size int64) {
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
	nodes := c.xds.Nodes()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	writeJSON(w, http.StatusOK, map[string]any{"sidecars": nodes})
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
