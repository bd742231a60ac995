package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// Direction says which side of the sidecar decided.
type Direction string

const (
	Egress  Direction = "egress"
	Ingress Direction = "ingress"
)

// Metric result labels.
const (
	ResultAllowed = "allowed" // forwarded, and the upstream answered
	ResultDenied  = "denied"  // refused by the sidecar (4xx)
	ResultError   = "error"   // upstream failure, or an internal error (5xx)
	// ResultClientClosed: the client went away before its response was complete; neither side failed.
	ResultClientClosed = "client_closed"
)

// DecisionRecord is one request's decision, allowed or refused, for the audit log.
type DecisionRecord struct {
	Time      time.Time
	Direction Direction
	Route     string // "" when no route matched

	// Who: on ingress what was verified; on egress Subject is our own identity (Options.Self).
	Subject          string
	AuthMethod       string
	PeerID           string
	SubjectKind      string
	DelegatedSubject string
	TransactionID    string
	ProofID          string
	// Traceparent is the request's W3C trace context, as forwarded (egress creates one when the agent sent none);
	// "" when an ingress request carried none that parses.
	Traceparent string

	// What.
	Host       string
	Method     string // HTTP method
	Path       string
	RemoteAddr string

	// Outcome. Allowed means the sidecar forwarded the request; Reason is the autherr code of a refusal or of an
	// upstream failure after forwarding ("" when the upstream answered).
	Allowed      bool
	Reason       string
	Message      string
	PolicyIDs    []string
	RevocationID string
	// MCPMethod and MCPName are the JSON-RPC method and the tool or prompt name or resource URI of an MCP request
	// that policy decided (comma-separated for a batch); Risk is the risk level policy saw. Set on ingress.
	MCPMethod string
	MCPName   string
	Risk      string
	Status    int
	// Latency runs from the first byte of the request to the end of the response; for a WebSocket or CONNECT
	// tunnel, to the end of the tunnel.
	Latency time.Duration
}

// DecisionSink receives every decision exactly once, synchronously on the request path, once the response is
// over (so with its status and latency): it must be quick (buffer, do not write to disk inline) and must not keep d
// after returning. A record that must be durable before the decision takes effect goes to the Auditor instead.
type DecisionSink interface {
	Record(ctx context.Context, d *DecisionRecord)
}

// Auditor makes decisions durable before they take effect. Audit is called synchronously: for an allowed request
// just before it is sent upstream (after egress has added its credentials, so the record names the transaction),
// for a CONNECT tunnel before it is established, and for every refusal before the refusal is written; a request
// forwarded and then failed (an upstream error, an unverified response) is audited twice, allowed and then
// refused. Status and Latency are not known yet (0). Audit returns once the record is durable; an error refuses an
// allowed request with 503 audit_unavailable, while a refusal stands as it is (refusing is safe unaudited). It must
// not keep d after returning.
type Auditor interface {
	Audit(ctx context.Context, d *DecisionRecord) error
}

// Metrics observes every request once; reason is an autherr code or "". Back it with Prometheus counters and a
// histogram; pre-register reasons with autherr.Codes().
type Metrics interface {
	ObserveRequest(direction, route, result, reason string, d time.Duration)
}

// Options are the parts egress and ingress handlers share.
type Options struct {
	// Self is our own workload identifier: the egress record's Subject and the XFCC By= on ingress.
	Self   string
	Limits Limits
	// Live, when set, supplies the per-request limits instead of Limits (see LiveLimits), so that they can be
	// changed while the handler serves; nil: Limits, fixed.
	Live *LiveLimits
	Sink DecisionSink
	// Auditor, when set, records every decision durably before it takes effect. Nil costs nothing.
	Auditor Auditor
	Metrics Metrics
	// Logger logs what no decision record carries (a refusal the Auditor could not record, a panic's stack); nil:
	// nothing is logged.
	Logger *zap.Logger
	// TLSConfig supplies the client tls.Config for https upstreams; nil uses the system roots and no client cert.
	TLSConfig TLSConfigFunc
}

func (o Options) withDefaults() Options {
	o.Limits = o.Limits.withDefaults()
	if o.Live == nil {
		o.Live = NewLiveLimits(o.Limits)
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// statusError overrides the HTTP status of a refusal whose reason has another default status (405 for CONNECT).
type statusError struct {
	status int
	header http.Header // extra response headers, e.g. Allow on a 405
	err    error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// PublicError carries the error_description a 5xx refusal may show its caller, where the error's own text is for
// the operator only (see publicDescription).
type PublicError struct {
	Description string
	Err         error
}

func (e *PublicError) Error() string { return e.Err.Error() }
func (e *PublicError) Unwrap() error { return e.Err }

func statusOf(err error) int {
	if se, ok := errors.AsType[*statusError](err); ok {
		return se.status
	}
	return autherr.HTTPStatus(err)
}

// statusClientClosed is recorded (never sent) when the client went away before the upstream answered.
const statusClientClosed = autherr.StatusClientClosed

type stateKey struct{}

// reqState follows one request from arrival to its decision record.
type reqState struct {
	opts *Options
	// limits is this request's snapshot of opts.Live: a reload changes the next requests', never this one's.
	limits Limits
	dir    Direction
	start  time.Time
	w      *respWriter
	ctx    context.Context
	rec    DecisionRecord
	route  *Route
	target string // dynamic upstream authority (egress routes without Upstream)
	// refused: the one refusal has been written (or could not be, headers being gone).
	refused bool
	// upgraded: the upstream switched protocols and the client connection is hijacked.
	upgraded bool
	status   int // overrides the observed status (tunnels, client gone)
	exchange *Exchange
	// outbound is the egress steps' view of the request, kept here to save an allocation per request.
	outbound Outbound
	// body is the client's request body as ingress reads it; nil without one, and on egress.
	body *clientBody
	// identity holds the verified identity headers ingress sets on the outgoing request.
	identity http.Header
}

func begin(opts *Options, dir Direction, w http.ResponseWriter, r *http.Request) (*reqState, *http.Request) {
	st := &reqState{opts: opts, limits: opts.Live.Load(), dir: dir, start: time.Now(), w: &respWriter{ResponseWriter: w}}
	st.rec = DecisionRecord{
		Time: st.start, Direction: dir, Host: r.Host, Method: r.Method, Path: r.URL.Path, RemoteAddr: r.RemoteAddr,
	}
	if dir == Egress {
		st.rec.Subject = opts.Self
		if r.URL.IsAbs() {
			st.rec.Host = r.URL.Host
		}
	}
	st.ctx = context.WithValue(r.Context(), stateKey{}, st)
	return st, r.WithContext(st.ctx)
}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

func (st *reqState) setRoute(rt *Route) {
	st.route = rt
	st.rec.Route = rt.Name
}

// refuse is the one place that turns an error into a response: a JSON body {"error", "error_description"} with
// the status autherr maps the reason to, Cache-Control: no-store. The first refusal wins; when the response has
// already started (a stream failing midway) it is only recorded.
func (st *reqState) refuse(err error) {
	if st.refused {
		return
	}
	st.refused = true
	code := autherr.Code(err)
	status := statusOf(err)
	st.rec.Reason = code
	st.rec.Message = err.Error()
	if ResultOf(code) == ResultDenied || code == autherr.Internal {
		st.rec.Allowed = false // refused by us, even if it happened on the way out (egress signing)
	}
	if re, ok := errors.AsType[*RevokedError](err); ok {
		st.rec.RevocationID = re.ID
	}
	if code != autherr.ErrAuditUnavailable.Code() {
		if aerr := st.audit(); aerr != nil {
			// The refusal stands: a request refused unaudited did nothing, and its own reason tells the caller more
			// than audit_unavailable would.
			st.opts.Logger.Error("refusal not audited", zap.String("direction", string(st.dir)), zap.String("route", st.rec.Route),
				zap.String("reason", code), zap.Error(aerr))
		}
	}
	desc := err.Error()
	if status >= 500 {
		// What failed on our side or upstream (the tool's address, a dial error) is for the operator: the
		// decision record has it (and the sidecar logs each record once), the caller gets the reason alone.
		desc = publicDescription[code]
		if pe, ok := errors.AsType[*PublicError](err); ok {
			desc = pe.Description
		}
		if desc == "" {
			desc = http.StatusText(status)
		}
	}
	if st.w.status != 0 || st.upgraded || st.status != 0 {
		return
	}
	h := st.w.Header()
	clear(h)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if se, ok := errors.AsType[*statusError](err); ok {
		for k, v := range se.header {
			h[k] = v
		}
	}
	if closesConnection(err) {
		h.Set("Connection", "close")
	}
	if status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		h.Set("WWW-Authenticate", challenge(st.route))
	}
	if be, ok := errors.AsType[*BodyError](err); ok {
		h.Set("Content-Type", be.ContentType)
		st.w.WriteHeader(status)
		_, _ = st.w.Write(be.Body)
		return
	}
	st.w.WriteHeader(status)
	_ = json.NewEncoder(st.w).Encode(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, desc})
}

// publicDescription is the error_description of a 5xx refusal, whose error text may name internal addresses.
var publicDescription = map[string]string{
	autherr.Internal:                   "internal error",
	autherr.ErrUpstream.Code():         "the upstream could not be reached or failed",
	autherr.ErrUpstreamTimeout.Code():  "the upstream did not answer in time",
	autherr.ErrBodyBudget.Code():       "too many request bodies are being held; retry later",
	autherr.ErrAuditUnavailable.Code(): "the audit log cannot be written, so the request was not served",
}

// end is deferred by every handler: it turns a panic into a 500 (re-panicking http.ErrAbortHandler, which is how
// a stream is aborted), then records the decision exactly once.
func (st *reqState) end() {
	if p := recover(); p != nil {
		if p == http.ErrAbortHandler {
			if st.ctx.Err() != nil {
				st.status = statusClientClosed
				st.refuse(fmt.Errorf("%w: client went away mid-response", autherr.ErrClientClosed))
			} else {
				st.refuse(fmt.Errorf("%w: upstream response aborted mid-stream", autherr.ErrUpstream))
			}
			st.record()
			panic(p)
		}
		// The decision record logs the panic once, as an internal error; its stack is for whoever debugs it.
		st.opts.Logger.Debug("panic in request path", zap.String("direction", string(st.dir)), zap.Any("panic", p),
			zap.String("stack", string(debug.Stack())))
		st.refuse(fmt.Errorf("panic: %v", p))
	}
	st.record()
}

// audit hands the decision so far to the Auditor and waits until it is durable. Without an Auditor it costs one
// nil check.
func (st *reqState) audit() error {
	a := st.opts.Auditor
	if a == nil {
		return nil
	}
	st.fill()
	if err := a.Audit(st.ctx, &st.rec); err != nil {
		return fmt.Errorf("%w: %v", autherr.ErrAuditUnavailable, err)
	}
	return nil
}

// fill copies what the ingress steps established into the record.
func (st *reqState) fill() {
	rec := &st.rec
	if x := st.exchange; x != nil {
		if !x.Peer.ID.IsZero() {
			rec.PeerID = x.Peer.ID.String()
		}
		if id := x.Identity; id != nil {
			rec.Subject, rec.AuthMethod, rec.ProofID = id.Subject, string(id.Method), id.ProofID
			rec.SubjectKind, rec.DelegatedSubject, rec.TransactionID = id.SubjectKind, id.DelegatedSubject, id.TransactionID
		}
		if d := x.Decision; d != nil {
			rec.PolicyIDs, rec.MCPMethod, rec.MCPName, rec.Risk = d.PolicyIDs, d.MCPMethod, d.MCPName, d.Risk
		}
	}
}

func (st *reqState) record() {
	rec := &st.rec
	st.fill()
	switch {
	case st.status != 0:
		rec.Status = st.status
	case st.upgraded:
		rec.Status = http.StatusSwitchingProtocols
	case st.w.status != 0:
		rec.Status = st.w.status
	default:
		rec.Status = http.StatusOK
	}
	rec.Latency = time.Since(st.start)
	if m := st.opts.Metrics; m != nil {
		m.ObserveRequest(string(st.dir), rec.Route, ResultOf(rec.Reason), rec.Reason, rec.Latency)
	}
	if s := st.opts.Sink; s != nil {
		s.Record(st.ctx, rec)
	}
}

// ResultOf is the metric result label of a decision with reason ("" when allowed).
func ResultOf(reason string) string {
	switch reason {
	case "":
		return ResultAllowed
	case autherr.ErrUpstream.Code(), autherr.ErrUpstreamTimeout.Code(), autherr.Internal:
		return ResultError
	case autherr.ErrClientClosed.Code():
		return ResultClientClosed
	default:
		return ResultDenied
	}
}

// respWriter remembers the final status. Flush and Hijack reach the underlying writer through Unwrap
// (http.ResponseController), which is what httputil.ReverseProxy uses.
type respWriter struct {
	http.ResponseWriter
	status int
}

func (w *respWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *respWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
