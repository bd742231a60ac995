package sidecar

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"

	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/internal/netlimit"
	"github.com/agentauth/agentauth/pkg/audit"
	"github.com/agentauth/agentauth/pkg/wire"
)

// Config is the whole sidecar configuration. Field names are the YAML keys.
type Config struct {
	// Identity says where this workload's credentials come from.
	Identity IdentityConfig `yaml:"identity"`
	// Egress, when set, authenticates the local agent's outgoing calls.
	Egress *EgressConfig `yaml:"egress,omitempty"`
	// Ingress, when set, verifies calls to the local tool.
	Ingress *IngressConfig `yaml:"ingress,omitempty"`
	// Admin serves /healthz, /readyz and /metrics.
	Admin AdminConfig `yaml:"admin"`
	// Log sets the zap JSON logger.
	Log LogConfig `yaml:"log"`
	// Limits bound what a peer can make the sidecar hold.
	Limits LimitsConfig `yaml:"limits"`
	// Controller, when set, receives policy and revocations from the controller over xDS.
	Controller *ControlPlaneConfig `yaml:"controller,omitempty"`
	// ShutdownGrace is how long SIGTERM waits for in-flight requests (default 15s).
	ShutdownGrace time.Duration `yaml:"shutdownGrace"`
	// Audit, when set, keeps a tamper-evident log of every decision and remediation (README "Audit").
	Audit *AuditConfig `yaml:"audit,omitempty"`
	// Tracing, when set, exports one OpenTelemetry span per decided request over OTLP/gRPC (off by default).
	Tracing *TracingConfig `yaml:"tracing,omitempty"`
	// Runtime sets the Go garbage collector's GOGC and GOMEMLIMIT, over the environment's (applied at start).
	Runtime RuntimeConfig `yaml:"runtime,omitempty"`
}

// TracingConfig points the sidecar's spans at an OpenTelemetry collector.
type TracingConfig struct {
	// Endpoint is the collector's OTLP/gRPC address, host:port (usually port 4317).
	Endpoint string `yaml:"endpoint"`
	// Insecure sends spans without TLS: for a collector on the same host or in the same pod.
	Insecure bool `yaml:"insecure,omitempty"`
	// SampleRatio is the share of traces recorded when the caller made no sampling decision or decided not to
	// sample, from 0 to 1 (default 1). A sampled traceparent is always followed.
	SampleRatio *float64 `yaml:"sampleRatio,omitempty"`
	// ServiceName is the service.name of the spans' resource (default agentauth-sidecar).
	ServiceName string `yaml:"serviceName,omitempty"`
}

// Audit settings' values.
const (
	AuditSync         = "sync"
	AuditBatched      = "batched"
	AuditRefuse       = "refuse"
	AuditAllow        = "allow"
	auditMinFileBytes = 1 << 20
)

// AuditConfig is the sidecar's tamper-evident audit log (pkg/audit).
type AuditConfig struct {
	// Dir holds the log files, the signed checkpoints, the checkpoint key (audit.key, which never leaves the
	// host) and its certificate by this workload's SVID (audit-key.jws). One sidecar per directory.
	Dir string `yaml:"dir"`
	// Durability is sync (default: a record is fsynced before its decision takes effect; concurrent records share
	// an fsync) or batched (a record is written to the file before its decision takes effect, which survives a
	// crash of the sidecar, and fsynced within 50ms, so a crash of the machine loses at most the last 50ms).
	Durability string `yaml:"durability,omitempty"`
	// MaxFileBytes rotates to a new file past this size (default 64 MiB, at least 1 MiB).
	MaxFileBytes int64 `yaml:"maxFileBytes,omitempty"`
	// CheckpointInterval is how often a signed checkpoint is written (default 10s).
	CheckpointInterval time.Duration `yaml:"checkpointInterval,omitempty"`
	// OnWriteError is refuse (default: answer 503 audit_unavailable rather than serve unaudited) or allow (serve,
	// and count each unaudited decision in agentauth_audit_unaudited_total).
	OnWriteError string `yaml:"onWriteError,omitempty"`
}

// IdentityConfig names exactly one credential source.
type IdentityConfig struct {
	// WorkloadAPI reads X.509-SVIDs and bundles from the SPIFFE Workload API (SPIRE).
	WorkloadAPI *WorkloadAPIConfig `yaml:"workloadAPI,omitempty"`
	// Files reads credentials from PEM/JSON files on disk and reloads them when they change.
	Files *FilesConfig `yaml:"files,omitempty"`
	// Controller gets credentials from the agentauth controller's built-in issuer: a one-time join token the
	// first time, renewal with the current SVID afterwards.
	Controller *ControllerIdentityConfig `yaml:"controller,omitempty"`
	// WITAlgorithms is the one algorithm rule for WITs, in every trust domain: the JWS algorithms allowed for a
	// WIT's signature and its cnf.jwk.alg, applied to this sidecar's own WIT (at -check and at start) and to every
	// WIT it verifies (callers on ingress, signed responses on egress). Default and upper bound: what WITProfile
	// allows. With identity.controller, a list that begins with EdDSA makes this workload's WIT key Ed25519.
	WITAlgorithms []string `yaml:"witAlgorithms,omitempty"`
	// WITProfile is the rule WITAlgorithms is bounded by: spiffe (default), the SPIFFE WIT-SVID profile
	// (ES256/384/512, RS256/384/512, PS256/384/512; no EdDSA); or wimse, the WIMSE drafts, which also allow EdDSA
	// (Ed25519) workload keys. Peers on the SPIFFE profile refuse EdDSA WITs, so wimse is an explicit opt-out.
	WITProfile string `yaml:"witProfile,omitempty"`
}

// ControllerIdentityConfig points at the controller's issuer endpoint.
type ControllerIdentityConfig struct {
	// Address is the issuer endpoint, host:port.
	Address string `yaml:"address"`
	// Bundle is the controller's CA certificate (its dataDir/bundle.pem): the trust that authenticates the
	// issuer before this sidecar has credentials of its own.
	Bundle string `yaml:"bundle"`
	// JoinToken or JoinTokenFile holds the one-time token from `agentauthctl join-token`.
	JoinToken     string `yaml:"joinToken,omitempty"`
	JoinTokenFile string `yaml:"joinTokenFile,omitempty"`
	// LocalSocket, instead of a join token, is the controller's issuer.localSocket: on the same host, the sidecar
	// attests there as the SPIFFE ID the controller maps its Unix uid to. The SVID must verify against Bundle.
	LocalSocket string `yaml:"localSocket,omitempty"`
	// KubernetesTokenFile, instead of a join token, is the pod's projected service-account token made for the
	// controller's audience (issuer.kubernetes.audience); the controller checks it with the Kubernetes API and
	// issues the pod's SPIFFE ID. Read again at each attestation, as the kubelet rotates it.
	KubernetesTokenFile string `yaml:"kubernetesTokenFile,omitempty"`
	// StateDir keeps the current SVID so a restart renews instead of needing a new join token.
	StateDir string `yaml:"stateDir,omitempty"`
}

// ControlPlaneConfig points at the controller's xDS endpoint.
type ControlPlaneConfig struct {
	// Address is the controller's ADS endpoint, host:port.
	Address string `yaml:"address"`
}

// WorkloadAPIConfig points at a SPIFFE Workload API socket.
type WorkloadAPIConfig struct {
	// Socket is e.g. unix:///run/spire/agent.sock; empty means $SPIFFE_ENDPOINT_SOCKET.
	Socket string `yaml:"socket"`
	// WIT and WITKey optionally name files with a WIT and its key, for proof modes the Workload API cannot serve.
	WIT    string `yaml:"wit,omitempty"`
	WITKey string `yaml:"witKey,omitempty"`
}

// FilesConfig names credential files; they are re-read when they change.
type FilesConfig struct {
	// Cert and Key are the X.509-SVID (PEM chain, leaf first) and its private key.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Bundles maps each trusted trust domain to files with its authorities: PEM CA certificates, a SPIFFE bundle
	// (JWK Set with x509-svid / jwt-svid / wit-svid keys) or a plain JWK Set. Our own trust domain must be there.
	Bundles map[string][]string `yaml:"bundles"`
	// WITIssuers maps a trust domain to JWK Set files of the keys that sign its WITs: the trust-domain JWKS a
	// WIMSE deployment publishes. A plain JWK Set under bundles would be read as JWT-SVID authorities instead.
	WITIssuers map[string][]string `yaml:"witIssuers,omitempty"`
	// WIT and WITKey are this workload's WIT (compact JWS) and the PEM key of its cnf.jwk.
	WIT            string        `yaml:"wit,omitempty"`
	WITKey         string        `yaml:"witKey,omitempty"`
	ReloadInterval time.Duration `yaml:"reloadInterval,omitempty"`
}

// EgressConfig is the agent side.
type EgressConfig struct {
	// ProxyListen is the explicit HTTP proxy address (what HTTP_PROXY points at).
	ProxyListen string `yaml:"proxyListen,omitempty"`
	// TransparentListen receives connections redirected by iptables/nftables.
	TransparentListen string `yaml:"transparentListen,omitempty"`
	// Routes map destinations to upstreams and proof modes.
	Routes []RouteConfig `yaml:"routes"`
	// TokenService, when set, is where routes with txnToken get Transaction Tokens (RFC 8693 token exchange),
	// normally the controller's https://HOST:PORT/token.
	TokenService *EgressTokenServiceConfig `yaml:"tokenService,omitempty"`
}

// EgressTokenServiceConfig says where and how the agent's Txn-Tokens are obtained.
type EgressTokenServiceConfig struct {
	Endpoint string `yaml:"endpoint"`
	// ServerID is the SPIFFE ID the token service must present (default: the controller's,
	// spiffe://<trust domain>/agentauth/controller). The user's token and an unused proof go to it.
	ServerID string `yaml:"serverID,omitempty"`
	// UserTokenHeader is where the agent passes the token of the user it acts for (default Authorization, as a
	// Bearer token); it is exchanged and removed from the outgoing request.
	UserTokenHeader string `yaml:"userTokenHeader,omitempty"`
}

// RouteConfig is one destination the agent may call.
type RouteConfig struct {
	Name string `yaml:"name"`
	// Host is the destination as the agent addresses it, host or host:port.
	Host string `yaml:"host"`
	// PathPrefix narrows the route (default "/").
	PathPrefix string `yaml:"pathPrefix,omitempty"`
	// Upstream is where the sidecar sends the call, normally the tool's ingress sidecar.
	Upstream string `yaml:"upstream"`
	// Modes lists the proofs added: any of mtls, wpt, httpsig; or passthrough alone.
	Modes []string `yaml:"modes"`
	// ServerID is the SPIFFE ID the upstream must present under mtls.
	ServerID string `yaml:"serverID,omitempty"`
	// Audience overrides the WPT aud / wimse-aud (default: target URI without query).
	Audience string `yaml:"audience,omitempty"`
	// ProofLifetime is the WPT or signature lifetime (default 60s).
	ProofLifetime time.Duration `yaml:"proofLifetime,omitempty"`
	// SignedResponses (httpsig) asks the upstream to sign its responses (wimse-sign-response) and answers 502
	// response_unverified instead of any response that is unsigned or fails verification.
	SignedResponses bool `yaml:"signedResponses,omitempty"`
	// H2C sends cleartext HTTP/2 to a plain-http upstream (gRPC without TLS).
	H2C bool `yaml:"h2c,omitempty"`
	// AllowCleartextProofs lets wpt or httpsig go to an http:// upstream. The WIMSE drafts require TLS: a WIT is a
	// bearer credential to whoever reads it with a proof, and a WPT binds neither method nor body. Set it only when
	// the hop is protected otherwise (a mesh's TLS, loopback).
	AllowCleartextProofs bool `yaml:"allowCleartextProofs,omitempty"`
	// TxnToken, when set, attaches a Transaction Token (from egress.tokenService) to every call on this route; the
	// WPT or signature binds it.
	TxnToken *RouteTxnConfig `yaml:"txnToken,omitempty"`
	// AccessToken, for a legacy API that only takes OAuth bearer tokens, exchanges the agent's credential (and
	// the user's, when present) for an access token from egress.tokenService and sends it as Authorization: Bearer.
	AccessToken *RouteAccessTokenConfig `yaml:"accessToken,omitempty"`
}

// RouteAccessTokenConfig names the legacy API an access token is requested for (RFC 8693 audience/resource).
type RouteAccessTokenConfig struct {
	Audience string `yaml:"audience,omitempty"`
	Resource string `yaml:"resource,omitempty"`
	Scope    string `yaml:"scope,omitempty"`
}

// RouteTxnConfig is a route's Transaction Token request.
type RouteTxnConfig struct {
	// Scope requested for the transaction.
	Scope string `yaml:"scope,omitempty"`
}

// IngressConfig is the tool side.
type IngressConfig struct {
	Listen string `yaml:"listen"`
	// Backend is the local tool, normally http://127.0.0.1:PORT.
	Backend string `yaml:"backend"`
	// BackendH2C speaks cleartext HTTP/2 to the backend (gRPC tools).
	BackendH2C bool `yaml:"backendH2C,omitempty"`
	// MTLS terminates TLS on Listen with this workload's X.509-SVID and says which client certificates to accept.
	MTLS *IngressMTLSConfig `yaml:"mtls,omitempty"`
	// Require lists what every caller must present: mtls means a client X.509-SVID; wpt and httpsig are
	// alternatives, one of those listed must be present (a WIT with a WPT, or a WIT with an HTTP signature).
	Require []string `yaml:"require"`
	// Host is the name callers use for this tool (e.g. weather.tools.local): the expected proof audience is
	// scheme://Host[:port]/path of each request, built from this trusted value, never from the Host header.
	Host string `yaml:"host,omitempty"`
	// Audience, when set, is the one aud / wimse-aud value accepted instead (callers' routes must send it).
	Audience string `yaml:"audience,omitempty"`
	// ExternalURL is the scheme://host[:port] callers use when TLS ends in front of this listener: the expected
	// audience is ExternalURL + the request path, whatever the listener's own scheme.
	ExternalURL string `yaml:"externalURL,omitempty"`
	// ClockSkew tolerated on iat/exp/created/expires (default 30s).
	ClockSkew time.Duration `yaml:"clockSkew,omitempty"`
	// MaxProofLifetime refuses proofs valid for longer (default 5m).
	MaxProofLifetime time.Duration `yaml:"maxProofLifetime,omitempty"`
	// ReplayCacheSize bounds remembered proof ids (default 1,000,000).
	ReplayCacheSize int `yaml:"replayCacheSize,omitempty"`
	// Policy holds local Cedar policy files; with a controller configured, the controller's policies are used.
	Policy *PolicyConfig `yaml:"policy,omitempty"`
	// TxnToken verifies Transaction Tokens: the delegated user and transaction id reach policy, audit and the tool.
	TxnToken *IngressTxnConfig `yaml:"txnToken,omitempty"`
	// AllowCleartextProofs accepts wpt and httpsig on a listener without TLS (no mtls section). The WIMSE drafts
	// require TLS; set it only when TLS ends in front of this listener (a mesh or load balancer), or on loopback.
	AllowCleartextProofs bool `yaml:"allowCleartextProofs,omitempty"`
	// MCPPaths are paths where the tool serves MCP (JSON-RPC over streamable HTTP); POSTs to them are decided
	// per JSON-RPC call (tool, resource or prompt name).
	MCPPaths []string `yaml:"mcpPaths,omitempty"`
}

// IngressTxnConfig says whose Txn-Tokens are trusted.
type IngressTxnConfig struct {
	// Issuer is the token service's iss (its token endpoint URL).
	Issuer string `yaml:"issuer"`
	// JWKSURL (https, verified against this sidecar's SPIFFE bundles) or JWKSFile holds the token service's keys.
	JWKSURL  string `yaml:"jwksURL,omitempty"`
	JWKSFile string `yaml:"jwksFile,omitempty"`
	// ServerID is the SPIFFE ID the jwksURL server must present (default: the controller's): whoever serves the
	// keys can mint Txn-Tokens for any user.
	ServerID string `yaml:"serverID,omitempty"`
	// Required refuses requests without a Txn-Token.
	Required bool `yaml:"required,omitempty"`
}

// IngressMTLSConfig says which peers may connect.
type IngressMTLSConfig struct {
	// TrustDomains whose members may connect (at least one unless AllowIDs is set).
	TrustDomains []string `yaml:"trustDomains,omitempty"`
	// AllowIDs restricts peers to these SPIFFE IDs; with TrustDomains too, a peer must pass both. Both lists
	// apply only when client certificates are required.
	AllowIDs []string `yaml:"allowIDs,omitempty"`
	// Required refuses TLS connections without a client certificate (default: true when require has mtls).
	Required *bool `yaml:"required,omitempty"`
}

// PolicyConfig points at Cedar policy files.
type PolicyConfig struct {
	Files []string `yaml:"files"`
}

// Default admin.listen per role: an agent's and a tool's sidecar on one host do not collide. A sidecar with both
// egress and ingress has no default: it would take one of them from another sidecar on its host.
const (
	DefaultEgressAdmin  = "127.0.0.1:15000"
	DefaultIngressAdmin = "127.0.0.1:15100"
)

// AdminConfig is the operations endpoint.
type AdminConfig struct {
	// Listen is host:port (default DefaultEgressAdmin with egress only, DefaultIngressAdmin with ingress only;
	// required with both).
	Listen string `yaml:"listen"`
	// Pprof serves Go's runtime profiles under /debug/pprof/ on the admin listener. Off by default: profiles
	// expose internals and cost CPU while taken, so turn it on only to diagnose, on a loopback admin address.
	Pprof bool `yaml:"pprof,omitempty"`
	// Limits bound the admin listener's connections (default: 128, 32 per client IP, read header 5s, read 10s,
	// idle 60s): a flood of probes cannot take the descriptors the data plane needs.
	Limits netlimit.Config `yaml:"limits,omitempty"`
}

// defaultAdminLimits are admin.limits' defaults: probes and scrapes come from a few addresses, a few at a time.
var defaultAdminLimits = netlimit.Config{MaxConnections: 128, MaxConnectionsPerIP: 32,
	ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}

// LogConfig sets logging.
type LogConfig struct {
	// Level is debug, info, warn or error (default info).
	Level string `yaml:"level,omitempty"`
}

// DefaultHTTP2HeaderTableSize is limits.http2HeaderTableSize's default; README "Benchmarks" has what larger ones
// measured.
const DefaultHTTP2HeaderTableSize = 4096

// maxHTTP2HeaderTableSize bounds limits.http2HeaderTableSize: the header state a peer may make each connection hold.
const maxHTTP2HeaderTableSize = 1 << 20

// LimitsConfig bounds resource use per connection and request.
type LimitsConfig struct {
	MaxHeaderBytes    int           `yaml:"maxHeaderBytes,omitempty"`
	MaxBodyBytes      int64         `yaml:"maxBodyBytes,omitempty"`
	ReadHeaderTimeout time.Duration `yaml:"readHeaderTimeout,omitempty"`
	IdleTimeout       time.Duration `yaml:"idleTimeout,omitempty"`
	MaxConnections    int           `yaml:"maxConnections,omitempty"`
	// MaxConnectionsPerIP caps one client's (IPv4 address, IPv6 /64) connections on each listener (default 2048).
	MaxConnectionsPerIP int           `yaml:"maxConnectionsPerIP,omitempty"`
	UpstreamTimeout     time.Duration `yaml:"upstreamTimeout,omitempty"`
	// MaxBufferedBodies caps the bytes of request bodies ingress holds at once (HTTP signature digests, policy on
	// MCP bodies), across requests: past it, 503 body_budget_exhausted. At least maxBodyBytes.
	MaxBufferedBodies int64 `yaml:"maxBufferedBodies,omitempty"`
	// BodyReadTimeout and BodyMinRate (bytes/s): ingress waits on a client's request body for bodyReadTimeout
	// plus one second per bodyMinRate bytes received, then answers 408 body_timeout.
	BodyReadTimeout time.Duration `yaml:"bodyReadTimeout,omitempty"`
	BodyMinRate     int64         `yaml:"bodyMinRate,omitempty"`
	// HTTP2HeaderTableSize is the HPACK dynamic table size (bytes) of HTTP/2 connections, listeners and upstreams
	// alike (default 4096, Go's): each connection may hold that much header state per direction.
	HTTP2HeaderTableSize int `yaml:"http2HeaderTableSize,omitempty"`
}

// FieldError is one validation problem: the field's path (e.g. "egress.routes[1].upstream"), its YAML line when
// the config came from YAML, and what is wrong.
type FieldError = confyaml.FieldError

// ValidationError holds every problem found, so an operator fixes them in one pass.
type ValidationError = confyaml.ValidationError

// Load reads, decodes (unknown keys are errors), defaults and validates a YAML config file.
func Load(path string) (*Config, error) {
	var cfg Config
	if err := confyaml.Load("sidecar config", path, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Parse decodes, defaults and validates YAML config bytes.
func Parse(data []byte) (*Config, error) {
	var cfg Config
	if err := confyaml.Parse("sidecar config", data, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Marshal renders the config as YAML, for generators such as the Kubernetes injector.
func (c *Config) Marshal() ([]byte, error) { return yaml.Marshal(c) }

// SetDefaults fills every unset field that has a default.
func (c *Config) SetDefaults() {
	if c.Admin.Listen == "" {
		switch {
		case c.Egress != nil && c.Ingress != nil: // Validate asks for it
		case c.Ingress != nil:
			c.Admin.Listen = DefaultIngressAdmin
		default:
			c.Admin.Listen = DefaultEgressAdmin
		}
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 15 * time.Second
	}
	l := &c.Limits
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = 64 << 10
	}
	if l.MaxBodyBytes == 0 {
		l.MaxBodyBytes = 8 << 20
	}
	if l.ReadHeaderTimeout == 0 {
		l.ReadHeaderTimeout = 10 * time.Second
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = 120 * time.Second
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = 10000
	}
	if l.MaxConnectionsPerIP == 0 {
		l.MaxConnectionsPerIP = min(2048, l.MaxConnections)
	}
	c.Admin.Limits = c.Admin.Limits.WithDefaults(defaultAdminLimits)
	if l.UpstreamTimeout == 0 {
		l.UpstreamTimeout = 30 * time.Second
	}
	if l.MaxBufferedBodies == 0 {
		l.MaxBufferedBodies = max(64<<20, l.MaxBodyBytes)
	}
	if l.BodyReadTimeout == 0 {
		l.BodyReadTimeout = 20 * time.Second
	}
	if l.BodyMinRate == 0 {
		l.BodyMinRate = 1 << 10
	}
	if l.HTTP2HeaderTableSize == 0 {
		l.HTTP2HeaderTableSize = DefaultHTTP2HeaderTableSize
	}
	if a := c.Audit; a != nil {
		if a.Durability == "" {
			a.Durability = AuditSync
		}
		if a.OnWriteError == "" {
			a.OnWriteError = AuditRefuse
		}
		if a.MaxFileBytes == 0 {
			a.MaxFileBytes = audit.DefaultMaxFileBytes
		}
		if a.CheckpointInterval == 0 {
			a.CheckpointInterval = audit.DefaultCheckpointInterval
		}
	}
	if tr := c.Tracing; tr != nil {
		if tr.SampleRatio == nil {
			one := 1.0
			tr.SampleRatio = &one
		}
		if tr.ServiceName == "" {
			tr.ServiceName = "agentauth-sidecar"
		}
	}
	if f := c.Identity.Files; f != nil && f.ReloadInterval == 0 {
		f.ReloadInterval = 5 * time.Second
	}
	if e := c.Egress; e != nil {
		for i := range e.Routes {
			r := &e.Routes[i]
			if r.PathPrefix == "" {
				r.PathPrefix = "/"
			}
			if r.ProofLifetime == 0 {
				r.ProofLifetime = 60 * time.Second
			}
		}
	}
	if in := c.Ingress; in != nil {
		if in.ClockSkew == 0 {
			in.ClockSkew = 30 * time.Second
		}
		if in.MaxProofLifetime == 0 {
			in.MaxProofLifetime = 5 * time.Minute
		}
		if in.ReplayCacheSize == 0 {
			in.ReplayCacheSize = 1_000_000
		}
		if in.MTLS != nil && in.MTLS.Required == nil {
			req := hasMode(in.Require, wire.ModeMTLS)
			in.MTLS.Required = &req
		}
	}
}

// Validate checks the whole config and returns a *ValidationError listing every problem.
func (c *Config) Validate() error {
	v := &validator{}
	c.validateIdentity(v)
	if c.Egress == nil && c.Ingress == nil {
		v.add("egress", "neither egress nor ingress is configured; the sidecar would do nothing")
	}
	if c.Egress != nil {
		c.Egress.validate(v, c)
	}
	if c.Ingress != nil {
		c.Ingress.validate(v)
	}
	if c.Controller != nil {
		v.HostPort("controller.address", c.Controller.Address, true)
		if c.Ingress != nil && c.Ingress.Policy != nil {
			v.add("ingress.policy", "the controller serves policy when controller is set; remove ingress.policy")
		}
	}
	if in := c.Ingress; in != nil && in.Host == "" && (in.Policy != nil || c.Controller != nil) {
		v.add("ingress.host", "required with policy (ingress.policy or a controller): it names the tool "+
			"(Tool::\"<host>\") the policies are written for, which must not come from the caller's Host header")
	}
	if c.Admin.Listen == "" && c.Egress != nil && c.Ingress != nil {
		v.add("admin.listen", fmt.Sprintf("required when one sidecar has both egress and ingress: the defaults are "+
			"one per role (%s egress, %s ingress), so that an agent's and a tool's sidecar on one host do not "+
			"collide, and this one would take another sidecar's", DefaultEgressAdmin, DefaultIngressAdmin))
	} else {
		v.HostPort("admin.listen", c.Admin.Listen, true)
	}
	v.LogLevel("log.level", c.Log.Level)
	if c.ShutdownGrace < 0 {
		v.add("shutdownGrace", "must not be negative")
	}
	l := c.Limits
	v.Positive("limits.maxHeaderBytes", int64(l.MaxHeaderBytes))
	v.Positive("limits.maxBodyBytes", l.MaxBodyBytes)
	v.Positive("limits.readHeaderTimeout", int64(l.ReadHeaderTimeout))
	v.Positive("limits.idleTimeout", int64(l.IdleTimeout))
	v.Positive("limits.maxConnections", int64(l.MaxConnections))
	v.Positive("limits.maxConnectionsPerIP", int64(l.MaxConnectionsPerIP))
	if l.MaxConnectionsPerIP > l.MaxConnections && l.MaxConnections > 0 {
		v.add("limits.maxConnectionsPerIP", fmt.Sprintf("%d is above limits.maxConnections (%d)", l.MaxConnectionsPerIP, l.MaxConnections))
	}
	c.Admin.Limits.Validate("admin.limits", v.Add)
	v.Positive("limits.upstreamTimeout", int64(l.UpstreamTimeout))
	v.Positive("limits.maxBufferedBodies", l.MaxBufferedBodies)
	if l.MaxBufferedBodies > 0 && l.MaxBufferedBodies < l.MaxBodyBytes {
		v.add("limits.maxBufferedBodies", "must be at least limits.maxBodyBytes: a body that may be buffered must fit")
	}
	v.Positive("limits.bodyReadTimeout", int64(l.BodyReadTimeout))
	v.Positive("limits.bodyMinRate", l.BodyMinRate)
	if l.HTTP2HeaderTableSize < 0 || l.HTTP2HeaderTableSize > maxHTTP2HeaderTableSize {
		v.add("limits.http2HeaderTableSize", fmt.Sprintf("%d is not between 1 and %d (1 MiB)", l.HTTP2HeaderTableSize, maxHTTP2HeaderTableSize))
	}
	if c.Audit != nil {
		c.Audit.validate(v)
	}
	c.Runtime.validate(v)
	if tr := c.Tracing; tr != nil {
		v.HostPort("tracing.endpoint", tr.Endpoint, true)
		if r := tr.SampleRatio; r != nil && !(*r >= 0 && *r <= 1) {
			v.add("tracing.sampleRatio", fmt.Sprintf("%v is not between 0 and 1", *r))
		}
	}
	return v.err()
}

func (a *AuditConfig) validate(v *validator) {
	v.Required("audit.dir", a.Dir)
	switch a.Durability {
	case AuditSync, AuditBatched:
	default:
		v.add("audit.durability", fmt.Sprintf("%q is not one of sync, batched", a.Durability))
	}
	switch a.OnWriteError {
	case AuditRefuse, AuditAllow:
	default:
		v.add("audit.onWriteError", fmt.Sprintf("%q is not one of refuse, allow", a.OnWriteError))
	}
	if a.MaxFileBytes < auditMinFileBytes {
		v.add("audit.maxFileBytes", fmt.Sprintf("%d is below the minimum of %d (1 MiB)", a.MaxFileBytes, auditMinFileBytes))
	}
	if a.CheckpointInterval < time.Second {
		v.add("audit.checkpointInterval", fmt.Sprintf("%s is below the minimum of 1s", a.CheckpointInterval))
	}
}

func (c *Config) validateIdentity(v *validator) {
	id := c.Identity
	switch id.WITProfile {
	case "", wire.WITProfileSPIFFE, wire.WITProfileWIMSE:
	default:
		v.add("identity.witProfile", fmt.Sprintf("%q is not one of %s (default), %s", id.WITProfile, wire.WITProfileSPIFFE, wire.WITProfileWIMSE))
	}
	for i, a := range id.WITAlgorithms {
		switch {
		case id.WITProfile == wire.WITProfileWIMSE && !slices.Contains(wire.WIMSEWITAlgs, a):
			v.add(fmt.Sprintf("identity.witAlgorithms[%d]", i), fmt.Sprintf("%q is not allowed for WITs by the WIMSE "+
				"profile (identity.witProfile: wimse); choose from %s", a, strings.Join(wire.WIMSEWITAlgs, ", ")))
		case id.WITProfile != wire.WITProfileWIMSE && a == "EdDSA":
			v.add(fmt.Sprintf("identity.witAlgorithms[%d]", i), fmt.Sprintf("%q is not allowed by the SPIFFE WIT-SVID "+
				"profile (identity.witProfile: spiffe, the default); Ed25519 workload keys need identity.witProfile: "+
				"wimse, and peers on the SPIFFE profile refuse them", a))
		case id.WITProfile != wire.WITProfileWIMSE && !slices.Contains(wire.WITAlgs, a):
			v.add(fmt.Sprintf("identity.witAlgorithms[%d]", i), fmt.Sprintf("%q is not allowed by the SPIFFE WIT-SVID "+
				"profile, whose spiffe:// identifiers this sidecar uses; choose from %s", a, strings.Join(wire.WITAlgs, ", ")))
		}
	}
	n := 0
	for _, set := range []bool{id.WorkloadAPI != nil, id.Files != nil, id.Controller != nil} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		v.add("identity", "set one of identity.workloadAPI, identity.files or identity.controller")
	case n > 1:
		v.add("identity", "set only one of identity.workloadAPI, identity.files and identity.controller")
	case id.Controller != nil:
		ic := id.Controller
		v.HostPort("identity.controller.address", ic.Address, true)
		v.Required("identity.controller.bundle", ic.Bundle)
		if ic.JoinToken != "" && ic.JoinTokenFile != "" {
			v.add("identity.controller.joinToken", "set joinToken or joinTokenFile, not both")
		}
		v.AbsPath("identity.controller.localSocket", ic.LocalSocket)
		v.AbsPath("identity.controller.kubernetesTokenFile", ic.KubernetesTokenFile)
	case id.Files != nil:
		f := id.Files
		v.Required("identity.files.cert", f.Cert)
		v.Required("identity.files.key", f.Key)
		if len(f.Bundles) == 0 {
			v.add("identity.files.bundles", "required: at least this workload's own trust domain and its bundle file")
		}
		for td, files := range f.Bundles {
			if _, err := spiffeid.TrustDomainFromString(td); err != nil {
				v.add("identity.files.bundles."+td, fmt.Sprintf("%q is not a trust domain: %v", td, err))
			}
			if len(files) == 0 {
				v.add("identity.files.bundles."+td, "list at least one bundle file")
			}
		}
		for td, files := range f.WITIssuers {
			if _, err := spiffeid.TrustDomainFromString(td); err != nil {
				v.add("identity.files.witIssuers."+td, fmt.Sprintf("%q is not a trust domain: %v", td, err))
			}
			if len(files) == 0 {
				v.add("identity.files.witIssuers."+td, "list at least one JWK Set file")
			}
		}
		if (f.WIT == "") != (f.WITKey == "") {
			v.add("identity.files.wit", "wit and witKey must be set together")
		}
		if f.ReloadInterval < 0 {
			v.add("identity.files.reloadInterval", "must not be negative")
		}
	case id.WorkloadAPI != nil:
		w := id.WorkloadAPI
		if w.Socket == "" && os.Getenv("SPIFFE_ENDPOINT_SOCKET") == "" {
			v.add("identity.workloadAPI.socket", "empty and SPIFFE_ENDPOINT_SOCKET is not set")
		}
		if (w.WIT == "") != (w.WITKey == "") {
			v.add("identity.workloadAPI.wit", "wit and witKey must be set together")
		}
	}
}

// hasWIT reports whether the identity source can supply a WIT, which wpt and httpsig need.
// witAlgorithms is the WIT algorithm allow-list in force.
func (id IdentityConfig) witAlgorithms() []string {
	switch {
	case len(id.WITAlgorithms) > 0:
		return id.WITAlgorithms
	case id.WITProfile == wire.WITProfileWIMSE:
		return wire.WIMSEWITAlgs
	}
	return wire.WITAlgs
}

// witAlgorithmsSetting names the setting that decides witAlgorithms, for refusals a peer or an operator reads.
func (id IdentityConfig) witAlgorithmsSetting() string {
	profile := id.WITProfile
	if profile == "" {
		profile = wire.WITProfileSPIFFE
	}
	if len(id.WITAlgorithms) > 0 {
		return fmt.Sprintf("this sidecar's identity.witAlgorithms (identity.witProfile: %s)", profile)
	}
	return fmt.Sprintf("this sidecar's identity.witProfile: %s", profile)
}

// workloadKeyAlgorithm is the algorithm of the WIT key this sidecar asks the controller to certify: EdDSA (an
// Ed25519 key) when identity.witAlgorithms begins with it, otherwise ES256.
func (id IdentityConfig) workloadKeyAlgorithm() string {
	if len(id.WITAlgorithms) > 0 && id.WITAlgorithms[0] == "EdDSA" {
		return "EdDSA"
	}
	return "ES256"
}

// verifiesWITs reports whether this sidecar verifies other workloads' WITs: ingress proofs or signed responses.
func (c *Config) verifiesWITs() bool {
	if c.Ingress != nil && hasProofs(c.Ingress.Require) {
		return true
	}
	if c.Egress != nil {
		for _, r := range c.Egress.Routes {
			if r.SignedResponses {
				return true
			}
		}
	}
	return false
}

func (c *Config) hasWIT() bool {
	if c.Identity.Controller != nil {
		return true
	}
	if f := c.Identity.Files; f != nil {
		return f.WIT != ""
	}
	if w := c.Identity.WorkloadAPI; w != nil {
		return w.WIT != ""
	}
	return false
}

func (e *EgressConfig) validate(v *validator, c *Config) {
	if e.ProxyListen == "" && e.TransparentListen == "" {
		v.add("egress", "set proxyListen, transparentListen or both")
	}
	v.HostPort("egress.proxyListen", e.ProxyListen, false)
	v.HostPort("egress.transparentListen", e.TransparentListen, false)
	if len(e.Routes) == 0 {
		v.add("egress.routes", "at least one route is needed; calls to unconfigured destinations are refused")
	}
	if ts := e.TokenService; ts != nil {
		if u, err := url.Parse(ts.Endpoint); err != nil || u.Scheme != "https" || u.Host == "" {
			v.add("egress.tokenService.endpoint", fmt.Sprintf("%q is not an https:// URL", ts.Endpoint))
		}
		v.SPIFFEID("egress.tokenService.serverID", ts.ServerID)
	}
	names := map[string]bool{}
	matches := map[string]string{}
	for i, r := range e.Routes {
		p := fmt.Sprintf("egress.routes[%d]", i)
		if r.Name == "" {
			v.add(p+".name", "required")
		} else if names[r.Name] {
			v.add(p+".name", fmt.Sprintf("duplicate route name %q", r.Name))
		}
		names[r.Name] = true
		if r.Host == "" {
			v.add(p+".host", "required (host or host:port the agent calls)")
		} else if strings.ContainsAny(r.Host, "/?#@ ") {
			v.add(p+".host", fmt.Sprintf("%q must be a host or host:port, not a URL", r.Host))
		}
		if !strings.HasPrefix(r.PathPrefix, "/") {
			v.add(p+".pathPrefix", fmt.Sprintf("%q must start with /", r.PathPrefix))
		}
		key := strings.ToLower(r.Host) + r.PathPrefix
		if prev, dup := matches[key]; dup {
			v.add(p+".host", fmt.Sprintf("same host and pathPrefix as route %q", prev))
		}
		matches[key] = r.Name
		u := v.URL(p+".upstream", r.Upstream)
		v.modes(p+".modes", r.Modes, true)
		if hasMode(r.Modes, wire.ModeMTLS) {
			if r.ServerID == "" {
				v.add(p+".serverID", "required with mode mtls: the SPIFFE ID the upstream must present")
			}
			if u != nil && u.Scheme != "https" {
				v.add(p+".upstream", "mode mtls needs an https:// upstream")
			}
		}
		if r.ServerID != "" {
			if _, err := spiffeid.FromString(r.ServerID); err != nil {
				v.add(p+".serverID", fmt.Sprintf("%q is not a SPIFFE ID: %v", r.ServerID, err))
			}
		}
		if hasProofs(r.Modes) && !c.hasWIT() {
			v.add(p+".modes", "wpt and httpsig need a WIT: set identity.files.wit/witKey (or identity.workloadAPI.wit/witKey)")
		}
		if r.Audience != "" {
			if au, err := url.Parse(r.Audience); err != nil || au.Scheme == "" || au.Host == "" {
				v.add(p+".audience", fmt.Sprintf("%q is not an absolute URI", r.Audience))
			}
		}
		if r.ProofLifetime < 0 || r.ProofLifetime > time.Hour {
			v.add(p+".proofLifetime", "must be between 0 and 1h (proofs are meant to be short-lived)")
		}
		if r.H2C && u != nil && u.Scheme != "http" {
			v.add(p+".h2c", "h2c needs an http:// upstream")
		}
		if hasProofs(r.Modes) && u != nil && u.Scheme == "http" && !r.AllowCleartextProofs {
			v.add(p+".upstream", "wpt and httpsig need an https:// upstream: the WIMSE drafts forbid sending a WIT "+
				"and its proofs in cleartext (set allowCleartextProofs: true only when the hop is protected otherwise)")
		}
		if r.SignedResponses && !hasMode(r.Modes, wire.ModeHTTPSig) {
			v.add(p+".signedResponses", "needs mode httpsig: only an HTTP-signed request can ask for a signed response")
		}
		if r.TxnToken != nil && e.TokenService == nil {
			v.add(p+".txnToken", "needs egress.tokenService: where Transaction Tokens come from")
		}
		if a := r.AccessToken; a != nil {
			if e.TokenService == nil {
				v.add(p+".accessToken", "needs egress.tokenService: where access tokens come from")
			}
			if a.Audience == "" && a.Resource == "" {
				v.add(p+".accessToken", "set audience or resource: the API the token is for")
			}
		}
	}
}

func (in *IngressConfig) validate(v *validator) {
	v.HostPort("ingress.listen", in.Listen, true)
	if u := v.URL("ingress.backend", in.Backend); u != nil && in.BackendH2C && u.Scheme != "http" {
		v.add("ingress.backendH2C", "h2c needs an http:// backend")
	}
	v.modes("ingress.require", in.Require, false)
	if hasMode(in.Require, wire.ModeMTLS) && in.MTLS == nil {
		v.add("ingress.mtls", "required when require includes mtls")
	}
	if m := in.MTLS; m != nil {
		if len(m.TrustDomains) == 0 && len(m.AllowIDs) == 0 {
			v.add("ingress.mtls.trustDomains", "set trustDomains or allowIDs: which peers may connect")
		}
		for i, td := range m.TrustDomains {
			v.TrustDomain(fmt.Sprintf("ingress.mtls.trustDomains[%d]", i), td)
		}
		for i, id := range m.AllowIDs {
			if _, err := spiffeid.FromString(id); err != nil {
				v.add(fmt.Sprintf("ingress.mtls.allowIDs[%d]", i), fmt.Sprintf("%q: %v", id, err))
			}
		}
		if len(m.AllowIDs) > 0 && m.Required != nil && !*m.Required {
			v.add("ingress.mtls.allowIDs", "applies only when client certificates are required (require: [mtls], "+
				"or mtls.required: true); without them any caller the proofs admit connects")
		}
	}
	if hasProofs(in.Require) && in.MTLS == nil && !in.AllowCleartextProofs {
		v.add("ingress.mtls", "wpt and httpsig need TLS on this listener (an mtls section): the WIMSE drafts forbid "+
			"receiving a WIT and its proofs in cleartext (set allowCleartextProofs: true only when TLS ends in front of it)")
	}
	if hasProofs(in.Require) && in.Host == "" && in.Audience == "" {
		v.add("ingress.host", "set host (or audience) with wpt or httpsig: it is how the sidecar knows a proof was made for this tool")
	}
	if in.Host != "" && strings.ContainsAny(in.Host, "/?#@ ") {
		v.add("ingress.host", fmt.Sprintf("%q must be a host or host:port, not a URL", in.Host))
	}
	if in.Audience != "" {
		if au, err := url.Parse(in.Audience); err != nil || au.Scheme == "" || au.Host == "" {
			v.add("ingress.audience", fmt.Sprintf("%q is not an absolute URI", in.Audience))
		}
	}
	if in.ExternalURL != "" {
		u, err := url.Parse(in.ExternalURL)
		switch {
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
			v.add("ingress.externalURL", fmt.Sprintf("%q must be scheme://host[:port] only, e.g. https://weather.tools.local", in.ExternalURL))
		case in.Audience != "":
			v.add("ingress.externalURL", "set externalURL or audience, not both: audience fixes one value for every path")
		}
	}
	v.Positive("ingress.clockSkew", int64(in.ClockSkew))
	v.Positive("ingress.maxProofLifetime", int64(in.MaxProofLifetime))
	v.Positive("ingress.replayCacheSize", int64(in.ReplayCacheSize))
	if p := in.Policy; p != nil && len(p.Files) == 0 {
		v.add("ingress.policy.files", "at least one Cedar policy file")
	}
	if t := in.TxnToken; t != nil {
		v.Required("ingress.txnToken.issuer", t.Issuer)
		if (t.JWKSURL == "") == (t.JWKSFile == "") {
			v.add("ingress.txnToken.jwksURL", "set exactly one of jwksURL and jwksFile")
		}
		v.SPIFFEID("ingress.txnToken.serverID", t.ServerID)
	}
	for i, p := range in.MCPPaths {
		if !strings.HasPrefix(p, "/") {
			v.add(fmt.Sprintf("ingress.mcpPaths[%d]", i), fmt.Sprintf("%q must start with /", p))
		}
	}
}

// validator collects the sidecar config's problems, with the checks the binaries' configs share (confyaml).
type validator struct{ confyaml.Problems }

func (v *validator) add(field, msg string) { v.Add(field, "%s", msg) }

func (v *validator) err() error { return v.Err("sidecar config") }

func (v *validator) modes(field string, modes []string, egress bool) {
	if len(modes) == 0 {
		v.add(field, "at least one of mtls, wpt, httpsig")
		return
	}
	seen := map[string]bool{}
	for i, m := range modes {
		f := fmt.Sprintf("%s[%d]", field, i)
		mode, err := wire.ParseMode(m)
		switch {
		case err != nil:
			v.add(f, fmt.Sprintf("unknown mode %q (want mtls, wpt, httpsig or passthrough)", m))
		case mode == wire.ModePassthrough:
			if !egress {
				v.add(f, "passthrough is an egress mode; ingress always verifies")
			} else if len(modes) > 1 {
				v.add(f, "passthrough cannot be combined with other modes")
			}
		}
		if seen[m] {
			v.add(f, fmt.Sprintf("mode %q listed twice", m))
		}
		seen[m] = true
	}
	if egress && hasMode(modes, wire.ModeWPT) && hasMode(modes, wire.ModeHTTPSig) {
		v.add(field, "wpt and httpsig are alternatives; pick one per route")
	}
}

// hasProofs reports whether modes include an application-layer proof (wpt or httpsig).
func hasProofs(modes []string) bool {
	return hasMode(modes, wire.ModeWPT) || hasMode(modes, wire.ModeHTTPSig)
}

// hasMode reports whether the configured names include m's.
func hasMode(names []string, m wire.Mode) bool { return contains(names, m.String()) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
