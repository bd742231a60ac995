package controller

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/internal/netlimit"
	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/issuer/k8sattest"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/signals"
	"github.com/agentauth/agentauth/pkg/wire"
)

// Config is the controller's configuration. Field names are the YAML keys.
type Config struct {
	// TrustDomain is the one trust domain this controller's CA issues for.
	TrustDomain string `yaml:"trustDomain"`
	// DataDir holds the state store (bbolt), the CA keys (when on disk) and bundle.pem, the trust bundle a
	// sidecar needs to authenticate the controller the first time.
	DataDir string `yaml:"dataDir"`
	// Issuer is the built-in identity issuer's gRPC endpoint (join-token attestation, renewal).
	Issuer IssuerConfig `yaml:"issuer"`
	// XDS is the ADS endpoint sidecars fetch policy and revocations from (mTLS).
	XDS ListenConfig `yaml:"xds"`
	// Admin is the local control socket the agentauthctl CLI talks to.
	Admin AdminConfig `yaml:"admin"`
	// Ops serves /healthz, /readyz and /metrics.
	Ops ListenConfig `yaml:"ops"`
	// TokenService is the embedded RFC 8693 token service that issues Transaction Tokens (and access tokens for
	// legacy routes) to agents, served over TLS at https://LISTEN/token with its keys at /jwks.
	TokenService *TokenServiceConfig `yaml:"tokenService,omitempty"`
	// SSF receives OpenID Shared Signals (CAEP, RISC) as Security Event Tokens and turns them into revocations
	// and risk changes.
	SSF *SSFConfig `yaml:"ssf,omitempty"`
	// Webhook, when set, serves the Kubernetes injector: the admission webhook that adds the sidecar to pods.
	Webhook *WebhookConfig `yaml:"webhook,omitempty"`
	Log     struct {
		Level string `yaml:"level,omitempty"`
	} `yaml:"log"`
	// InitState lets the controller start with empty state although dataDir/keys shows it ran here before
	// (the -init-state flag, never the YAML): without it, a missing or empty state.db is ErrStateMissing.
	InitState bool `yaml:"-"`

	// Audit, when set, keeps the controller's own tamper-evident audit log of its actions.
	Audit *AuditConfig `yaml:"audit,omitempty"`

	// State says where the state is kept: bbolt in dataDir (the default) or the Kubernetes API, shared by replicas.
	State StateConfig `yaml:"state,omitempty"`

	// Policy says where the live policy set comes from: the admin API (the default) or CedarPolicy objects.
	Policy PolicyConfig `yaml:"policy,omitempty"`
}

// Bounds of issuer.svidTTL. Lifetimes under SaneMinSVIDTTL are accepted, with a warning at start, so that tests
// and demos can watch credentials rotate every few seconds; in production every renewal is a round trip to the
// controller and every rotation new handshakes on every connection, so they cost more than they protect.
const (
	MinSVIDTTL     = time.Second
	SaneMinSVIDTTL = time.Minute
)

// IssuerConfig configures the built-in CA.
type IssuerConfig struct {
	Listen string `yaml:"listen"`
	// SVIDTTL is the lifetime of issued X.509-SVIDs and WITs (default 1h); sidecars renew at half of it.
	SVIDTTL time.Duration `yaml:"svidTTL,omitempty"`
	// CATTL is the lifetime of each root certificate the CA creates (default 43800h, 5 years). The root rotates:
	// at CAPrepareAt of the active root's life a successor (with a WIT signing key of its own) is created and
	// published in every trust bundle, at CAActivateAt it starts signing, and the old root stays in the bundles
	// until it expires. The window between them must be at least svidTTL, so every sidecar renews, and learns the
	// successor, before it signs anything. A new caTTL applies to the next root created.
	CATTL time.Duration `yaml:"caTTL,omitempty"`
	// CAPrepareAt and CAActivateAt are fractions of the active root's lifetime (defaults 0.5 and 0.8333, SPIRE's).
	CAPrepareAt  float64 `yaml:"caPrepareAt,omitempty"`
	CAActivateAt float64 `yaml:"caActivateAt,omitempty"`
	// Keys is "file" (PKCS#8 under dataDir/keys, mode 0600) or "tpm" (keys held by the TPM at TPMDevice).
	Keys      string `yaml:"keys,omitempty"`
	TPMDevice string `yaml:"tpmDevice,omitempty"`
	// LocalSocket, if set, is the path of a Unix socket where the issuer also serves local workloads: a process
	// attests there without a join token, as the SPIFFE ID its uid maps to in PeerIDs (the kernel's peer
	// credentials name the uid). Renewal stays on Listen, over mTLS.
	LocalSocket string `yaml:"localSocket,omitempty"`
	// PeerIDs maps Unix uids to SPIFFE IDs for LocalSocket; a uid not listed is refused.
	PeerIDs []PeerIDConfig `yaml:"peerIDs,omitempty"`
	// Limits bound Listen's connections: readHeaderTimeout bounds the TLS handshake, idleTimeout closes a
	// connection without calls, readTimeout is not used (gRPC).
	Limits netlimit.Config `yaml:"limits,omitempty"`
	// RateLimit bounds Attest calls per client IP (Attest needs no client certificate; Renew is not limited).
	RateLimit netlimit.RateConfig `yaml:"rateLimit,omitempty"`
	// Kubernetes, when set, attests pods by their projected service-account tokens, checked with the Kubernetes
	// API (TokenReview, and the pod the token is bound to), as spiffe://<trustDomain>/ns/<namespace>/sa/<name>.
	Kubernetes *k8sattest.Config `yaml:"kubernetes,omitempty"`
	// WITKeyAlgorithms is the trust domain's WIT key algorithm policy: the cnf.jwk.alg values (workload key
	// algorithms) the issuer certifies in WITs. Default: the SPIFFE WIT-SVID profile's list (ES256/384/512,
	// RS256/384/512, PS256/384/512). EdDSA (Ed25519), which the WIMSE drafts allow, must be listed explicitly, and
	// only sidecars with identity.witProfile: wimse accept such WITs. The WITs' own signature stays ES256.
	WITKeyAlgorithms []string `yaml:"witKeyAlgorithms,omitempty"`
}

// PeerIDConfig maps one Unix uid to the SPIFFE ID its processes get on the issuer's local socket.
type PeerIDConfig struct {
	UID      *uint32 `yaml:"uid"`
	SPIFFEID string  `yaml:"spiffeID"`
}

// maxUnixSocketPath is the longest path a Unix socket address holds on Linux (sun_path is 108 bytes with the NUL).
const maxUnixSocketPath = 107

// maxPrivateSocketPath is the longest admin.socket: it is bound in a new directory beside its path first
// (listenUnix), whose name takes up to privateDirSuffix more bytes.
const maxPrivateSocketPath = maxUnixSocketPath - privateDirSuffix

// TokenServiceConfig configures the token service.
type TokenServiceConfig struct {
	Listen string `yaml:"listen"`
	// Endpoint is the token endpoint's URL as agents reach it, e.g. https://controller.example.org:8445/token:
	// their proofs are made for it, and it is the iss of issued tokens (ingress txnToken.issuer). Default:
	// https://<listen>/token, right only when agents dial the listen address itself.
	Endpoint string `yaml:"endpoint,omitempty"`
	// UserIssuers are the identity providers whose user tokens an agent may exchange (the delegated subject).
	UserIssuers []UserIssuerConfig `yaml:"userIssuers,omitempty"`
	// TxnTokenTTL bounds issued Txn-Tokens (default 5m).
	TxnTokenTTL time.Duration `yaml:"txnTokenTTL,omitempty"`
	// AccessTokens say which workloads may get access tokens for which APIs, with at most which scopes. Access
	// tokens are bearer credentials outside the trust domain's control: without an entry, none are issued.
	AccessTokens []AccessTokenGrantConfig `yaml:"accessTokens,omitempty"`
	// Limits bound Listen's connections and requests.
	Limits netlimit.Config `yaml:"limits,omitempty"`
	// RateLimit bounds requests per client IP: the endpoint takes them before authenticating anyone.
	RateLimit netlimit.RateConfig `yaml:"rateLimit,omitempty"`
}

// AccessTokenGrantConfig lets the workloads listed get access tokens for one API (RFC 8693 audience or resource).
type AccessTokenGrantConfig struct {
	// Workloads are SPIFFE IDs of the trust domain, exactly.
	Workloads []string `yaml:"workloads"`
	// Audience is the API, matched exactly against the requested audience or resource.
	Audience string `yaml:"audience"`
	// Scopes are the most a token may carry; empty allows only tokens without scope.
	Scopes []string `yaml:"scopes,omitempty"`
}

// UserIssuerConfig is one trusted issuer of user tokens.
type UserIssuerConfig struct {
	Issuer    string   `yaml:"issuer"`
	Audiences []string `yaml:"audiences"`
	JWKSFile  string   `yaml:"jwksFile"`
	// SubjectPrefix is put before the sub of its users in issued tokens, e.g. "corp:". Required with several
	// issuers, and no issuer's may begin another's: "alice" of two identity providers must not be one user.
	SubjectPrefix string `yaml:"subjectPrefix,omitempty"`
	// Scopes are what its tokens without a scope (or scp) claim may be narrowed to. An unknown scope is not
	// unlimited: with none listed, such a token gets no Txn-Token (which needs a scope) and only scopeless
	// access tokens.
	Scopes []string `yaml:"scopes,omitempty"`
}

// SSFConfig configures the Shared Signals receiver: RFC 8935 push delivery at POST /ssf/events, RFC 8936 poll
// delivery and SSF stream management per transmitter.
type SSFConfig struct {
	Listen string `yaml:"listen"`
	// TLS, when set, serves Listen over HTTPS itself. Without it the receiver speaks plain HTTP and TLS must end
	// in front of it: pushes carry pushAuthorization, a bearer secret.
	TLS *TLSFilesConfig `yaml:"tls,omitempty"`
	// Transmitters are trusted from start to stop. Required, unless TransmitterObjects is set.
	Transmitters []TransmitterConfig `yaml:"transmitters"`
	// TransmitterObjects, when set, also trusts the transmitter of every SSFTransmitter object (agentauth.io/v1alpha1),
	// followed while running: see ssfcrd.go.
	TransmitterObjects *SSFObjectsConfig `yaml:"transmitterObjects,omitempty"`
	// Limits bound Listen's connections and requests.
	Limits netlimit.Config `yaml:"limits,omitempty"`
	// RateLimit bounds pushes per client IP: they are read before their SETs are verified.
	RateLimit netlimit.RateConfig `yaml:"rateLimit,omitempty"`
}

// SSFObjectsConfig is where the controller reads SSFTransmitter objects and the Secrets they refer to.
type SSFObjectsConfig struct {
	// Namespace holds the Secrets the objects refer to: the controller's own (default state.kubernetes.namespace;
	// required without it).
	Namespace string `yaml:"namespace,omitempty"`
	// Kubeconfig is a kubeconfig file (default state.kubernetes.kubeconfig); empty means the pod's in-cluster
	// service account.
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
}

// TLSFilesConfig is a server certificate in PEM files, re-read when they change: a renewed certificate is served
// to new connections without a restart, and a bad one is logged and counted and the one in use kept.
type TLSFilesConfig struct {
	// Cert is the certificate chain, leaf first; Key its private key (PKCS#8, SEC 1 or PKCS#1).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ReloadInterval is how often the files are checked for changes (default 10s).
	ReloadInterval time.Duration `yaml:"reloadInterval,omitempty"`
}

// TransmitterConfig is one trusted SSF transmitter.
type TransmitterConfig struct {
	// Issuer is the transmitter's iss, exactly. With Stream, its metadata is read from the issuer's
	// /.well-known/ssf-configuration (SSF §7.2).
	Issuer string `yaml:"issuer"`
	// Audience lists the aud values that name this controller.
	Audience []string `yaml:"audience"`
	// JWKSFile or JWKSURL holds the transmitter's public keys.
	JWKSFile string `yaml:"jwksFile,omitempty"`
	JWKSURL  string `yaml:"jwksURL,omitempty"`
	// PushAuthorization, if set, is the Authorization header value every push must carry; a stream created with
	// push delivery hands it to the transmitter as the delivery's authorization_header. PushAuthorizationFile
	// instead names a file holding it.
	PushAuthorization     string `yaml:"pushAuthorization,omitempty"`
	PushAuthorizationFile string `yaml:"pushAuthorizationFile,omitempty"`
	// pushAuthFile is PushAuthorizationFile's contents, read by Validate.
	pushAuthFile string
	// jwks is the JWK Set itself, of a transmitter from an SSFTransmitter object (read from its Secret, named by
	// jwksSource); never from the YAML.
	jwks       []byte
	jwksSource string
	// Poll, if set, fetches SETs from the transmitter's RFC 8936 poll endpoint.
	Poll *SSFPollConfig `yaml:"poll,omitempty"`
	// Stream, if set, manages this controller's stream at the transmitter (SSF §8) in the background: create it
	// (or find the one created before), read its status, ask for a verification event and wait for it.
	Stream *SSFStreamConfig `yaml:"stream,omitempty"`
}

// SSFPollConfig configures RFC 8936 poll delivery from one transmitter.
type SSFPollConfig struct {
	// URL is the transmitter's poll endpoint. Leave it out when stream.delivery is poll: the stream names it.
	URL string `yaml:"url,omitempty"`
	// Authorization is sent as the Authorization header of every poll (default: stream.authorization);
	// AuthorizationFile instead names a file holding it.
	Authorization     string `yaml:"authorization,omitempty"`
	AuthorizationFile string `yaml:"authorizationFile,omitempty"`
	authFile          string // AuthorizationFile's contents, read by Validate
	// Interval, if set, is the wait after a poll that brought nothing, and polls ask the transmitter to answer
	// at once. Unset, the controller long-polls: the transmitter holds each request until it has SETs.
	Interval time.Duration `yaml:"interval,omitempty"`
	// MaxEvents is the most SETs asked for per poll (default 25).
	MaxEvents int `yaml:"maxEvents,omitempty"`
}

// SSFStreamConfig configures the receiver side of SSF stream management with one transmitter.
type SSFStreamConfig struct {
	// Authorization is sent as the Authorization header of management calls (e.g. "Bearer …");
	// AuthorizationFile instead names a file holding it.
	Authorization     string `yaml:"authorization,omitempty"`
	AuthorizationFile string `yaml:"authorizationFile,omitempty"`
	authFile          string // AuthorizationFile's contents, read by Validate
	// Delivery is push (the transmitter POSTs to PushEndpoint) or poll (the controller polls the endpoint the
	// stream names).
	Delivery string `yaml:"delivery"`
	// PushEndpoint is this controller's POST /ssf/events as the transmitter reaches it, e.g.
	// https://agentauth.example.org/ssf/events. Push delivery only.
	PushEndpoint string `yaml:"pushEndpoint,omitempty"`
	// EventsRequested are event types, as URIs or short names (session-revoked); default: every CAEP and RISC
	// event type the controller maps.
	EventsRequested []string `yaml:"eventsRequested,omitempty"`
}

// ListenConfig is one TCP listener.
type ListenConfig struct {
	Listen string `yaml:"listen"`
	// Limits bound its connections (on xds, a gRPC listener: readHeaderTimeout bounds the TLS handshake,
	// idleTimeout closes a connection without streams, readTimeout is not used).
	Limits netlimit.Config `yaml:"limits,omitempty"`
}

// AdminConfig is the admin API's Unix socket.
type AdminConfig struct {
	Socket string `yaml:"socket"`
	// AllowedUIDs and AllowedGIDs are the Unix users and groups, besides root and the controller's own user, whose
	// processes may use the admin API: the kernel's peer credentials (SO_PEERCRED) of each connection are checked,
	// and any other peer gets 403. With either set, the socket file is mode 0666 so they can connect; the
	// directory holding it must let them reach it.
	AllowedUIDs []uint32 `yaml:"allowedUIDs,omitempty"`
	AllowedGIDs []uint32 `yaml:"allowedGIDs,omitempty"`
	// Limits bound the socket's connections and requests (maxConnectionsPerIP does not apply).
	Limits netlimit.Config `yaml:"limits,omitempty"`
}

// Default limits of each listener: sized so that together they stay far below the process's descriptor limit,
// whatever any one listener is sent. Attest, the token service and SSF push answer anyone who reaches them.
var (
	defaultHTTPLimits = netlimit.Config{MaxConnections: 1024, MaxConnectionsPerIP: 64,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second}
	// Each sidecar holds one ADS connection; many may share a host's address.
	defaultXDSLimits = netlimit.Config{MaxConnections: 16384, MaxConnectionsPerIP: 1024,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	// Workloads connect to attest and, once per half SVID lifetime, to renew.
	defaultIssuerLimits = netlimit.Config{MaxConnections: 2048, MaxConnectionsPerIP: 64,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	// Probes and scrapes, and agentauthctl: a few at a time.
	defaultOpsLimits = netlimit.Config{MaxConnections: 64, MaxConnectionsPerIP: 16,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	defaultAdminLimits = netlimit.Config{MaxConnections: 64, MaxConnectionsPerIP: 64,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second, IdleTimeout: 60 * time.Second}

	defaultTokenRate  = netlimit.RateConfig{RequestsPerSecond: 50, Burst: 100}
	defaultSSFRate    = netlimit.RateConfig{RequestsPerSecond: 20, Burst: 50}
	defaultAttestRate = netlimit.RateConfig{RequestsPerSecond: 5, Burst: 20}
)

// Load reads and validates a YAML config file; unknown keys are errors, and validation errors carry YAML lines.
func Load(path string) (*Config, error) {
	var cfg Config
	if err := confyaml.Load("controller config", path, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Parse decodes, defaults and validates YAML config bytes.
func Parse(data []byte) (*Config, error) {
	var cfg Config
	if err := confyaml.Parse("controller config", data, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Issuer.SVIDTTL == 0 {
		c.Issuer.SVIDTTL = time.Hour
	}
	if c.Issuer.CATTL == 0 {
		c.Issuer.CATTL = issuer.DefaultCATTL
	}
	if c.Issuer.CAPrepareAt == 0 {
		c.Issuer.CAPrepareAt = issuer.DefaultPrepareAt
	}
	if c.Issuer.CAActivateAt == 0 {
		c.Issuer.CAActivateAt = issuer.DefaultActivateAt
	}
	if c.Issuer.Keys == "" {
		c.Issuer.Keys = "file"
	}
	if c.Issuer.Keys == "tpm" && c.Issuer.TPMDevice == "" {
		c.Issuer.TPMDevice = "/dev/tpmrm0"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	c.State.setDefaults()
	if c.Policy.Source == "" {
		c.Policy.Source = PolicySourceAdmin
	}
	c.Issuer.Limits = c.Issuer.Limits.WithDefaults(defaultIssuerLimits)
	c.Issuer.RateLimit = c.Issuer.RateLimit.WithDefaults(defaultAttestRate)
	c.XDS.Limits = c.XDS.Limits.WithDefaults(defaultXDSLimits)
	c.Ops.Limits = c.Ops.Limits.WithDefaults(defaultOpsLimits)
	c.Admin.Limits = c.Admin.Limits.WithDefaults(defaultAdminLimits)
	if ts := c.TokenService; ts != nil {
		ts.Limits = ts.Limits.WithDefaults(defaultHTTPLimits)
		ts.RateLimit = ts.RateLimit.WithDefaults(defaultTokenRate)
	}
	if s := c.SSF; s != nil {
		s.Limits = s.Limits.WithDefaults(defaultHTTPLimits)
		s.RateLimit = s.RateLimit.WithDefaults(defaultSSFRate)
		if s.TLS != nil && s.TLS.ReloadInterval == 0 {
			s.TLS.ReloadInterval = 10 * time.Second
		}
		if o, k := s.TransmitterObjects, c.State.Kubernetes; o != nil && k != nil {
			o.Namespace = cmp.Or(o.Namespace, k.Namespace)
			o.Kubeconfig = cmp.Or(o.Kubeconfig, k.Kubeconfig)
		}
	}
	if c.Webhook != nil {
		c.Webhook.setDefaults(c.TrustDomain)
	}
}

// Validate returns every problem found, each naming its field: the controller's own fields, then each component's
// section (validator), with the checks the binaries' configs share (confyaml.Problems).
func (c *Config) Validate() error {
	var p confyaml.Problems
	td, _ := p.TrustDomain("trustDomain", c.TrustDomain) // zero when invalid: IDs are then not checked against it
	if c.DataDir == "" {
		p.Add("dataDir", "required: where state, keys and bundle.pem live")
	}
	// Each component checks its own section.
	for _, comp := range (&Controller{cfg: c, td: td}).newComponents() {
		if v, ok := comp.(validator); ok {
			v.validate(&p)
		}
	}
	if c.Audit != nil {
		c.Audit.validate(p.Add)
	}
	c.State.validate(&p, c.Issuer.Keys)
	c.Policy.validate(&p)
	p.LogLevel("log.level", c.Log.Level)
	return p.Err("controller config")
}

// validateListen checks a TCP listener's section (xds, ops).
func validateListen(p *confyaml.Problems, section string, l ListenConfig) {
	listenAddr(p, section+".listen", l.Listen)
	l.Limits.Validate(section+".limits", p.Add)
}

// listenAddr checks the host:port of a TCP listener.
func listenAddr(p *confyaml.Problems, field, addr string) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		p.Add(field, "%q is not host:port", addr)
	}
}

// maxCATTL bounds issuer.caTTL: a root is not meant to outlive the algorithms and people that made it.
const maxCATTL = 20 * 365 * 24 * time.Hour

// validateCARotation checks issuer.caTTL, caPrepareAt and caActivateAt.
func validateCARotation(p *confyaml.Problems, is IssuerConfig) {
	if is.CATTL < 2*is.SVIDTTL || is.CATTL > maxCATTL {
		p.Add("issuer.caTTL", "%v is outside 2 × svidTTL (%v)..%v", is.CATTL, 2*is.SVIDTTL, maxCATTL)
		return
	}
	switch {
	case !(is.CAPrepareAt > 0 && is.CAPrepareAt < 1):
		p.Add("issuer.caPrepareAt", "%v is not a fraction of the root's lifetime strictly between 0 and 1", is.CAPrepareAt)
	case !(is.CAActivateAt > is.CAPrepareAt && is.CAActivateAt < 1):
		p.Add("issuer.caActivateAt", "%v is not strictly between caPrepareAt (%v) and 1", is.CAActivateAt, is.CAPrepareAt)
	default:
		if window := time.Duration((is.CAActivateAt - is.CAPrepareAt) * float64(is.CATTL)); window < is.SVIDTTL {
			p.Add("issuer.caActivateAt", "the successor root would be published for %v before it signs, less than svidTTL (%v): sidecars that have not renewed would not trust it yet",
				window.Round(time.Second), is.SVIDTTL)
		}
	}
}

// validateIssuer checks the issuer section.
func (c *Config) validateIssuer(p *confyaml.Problems, td spiffeid.TrustDomain) {
	is := c.Issuer
	listenAddr(p, "issuer.listen", is.Listen)
	is.Limits.Validate("issuer.limits", p.Add)
	is.RateLimit.Validate("issuer.rateLimit", p.Add)
	if is.SVIDTTL < MinSVIDTTL || is.SVIDTTL > 24*time.Hour {
		p.Add("issuer.svidTTL", "%v is outside %v..24h (credentials are meant to be short-lived)", is.SVIDTTL, MinSVIDTTL)
	}
	if is.Keys != "file" && is.Keys != "tpm" {
		p.Add("issuer.keys", "%q is not file or tpm", is.Keys)
	}
	validateCARotation(p, is)
	c.validateLocalIssuer(p, td)
	for i, a := range is.WITKeyAlgorithms {
		if !slices.Contains(wire.WIMSEWITAlgs, a) {
			p.Add(fmt.Sprintf("issuer.witKeyAlgorithms[%d]", i), "%q cannot be certified as a workload key algorithm; choose from %s",
				a, strings.Join(wire.WIMSEWITAlgs, ", "))
		} else if slices.Index(is.WITKeyAlgorithms, a) < i {
			p.Add(fmt.Sprintf("issuer.witKeyAlgorithms[%d]", i), "%q is listed twice", a)
		}
	}
	if k := is.Kubernetes; k != nil {
		k.Validate("issuer.kubernetes", p.Add)
	}
}

// validate checks the admin section.
func (a *AdminConfig) validate(p *confyaml.Problems) {
	if a.Socket == "" {
		p.Add("admin.socket", "required: the Unix socket agentauthctl uses")
	} else if len(a.Socket) > maxPrivateSocketPath {
		p.Add("admin.socket", "%q is %d bytes, over the %d a Unix socket path may have here (it is bound in a private "+
			"directory beside it first)", a.Socket, len(a.Socket), maxPrivateSocketPath)
	}
	a.Limits.Validate("admin.limits", p.Add)
}

// validate checks the tokenService section; td is the trust domain, zero when invalid.
func (ts *TokenServiceConfig) validate(p *confyaml.Problems, td spiffeid.TrustDomain) {
	host, _, err := net.SplitHostPort(ts.Listen)
	if err != nil {
		p.Add("tokenService.listen", "%q is not host:port", ts.Listen)
	}
	if ts.Endpoint != "" {
		if u, err := url.Parse(ts.Endpoint); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			p.Add("tokenService.endpoint", "%q is not an https:// URL without query or fragment", ts.Endpoint)
		}
	} else if ip := net.ParseIP(host); err == nil && (host == "" || ip != nil && ip.IsUnspecified()) {
		p.Add("tokenService.endpoint", "required when listen is %q: agents cannot reach an unspecified address, "+
			"and their proofs must name the URL they do reach (e.g. https://controller.example.org:8445/token)", ts.Listen)
	}
	for i, u := range ts.UserIssuers {
		ts.validateUserIssuer(p, i, u)
	}
	ts.validateAccessTokens(p, td)
	ts.Limits.Validate("tokenService.limits", p.Add)
	ts.RateLimit.Validate("tokenService.rateLimit", p.Add)
}

// validateUserIssuer checks tokenService.userIssuers[i].
func (ts *TokenServiceConfig) validateUserIssuer(p *confyaml.Problems, i int, u UserIssuerConfig) {
	f := fmt.Sprintf("tokenService.userIssuers[%d]", i)
	if u.Issuer == "" || len(u.Audiences) == 0 || u.JWKSFile == "" {
		p.Add(f, "issuer, audiences and jwksFile are required")
	}
	switch {
	case strings.HasPrefix(u.SubjectPrefix, "spiffe:"):
		p.Add(f+".subjectPrefix", "%q would make users look like workloads", u.SubjectPrefix)
	case len(ts.UserIssuers) > 1 && u.SubjectPrefix == "":
		p.Add(f+".subjectPrefix", "required with several userIssuers: their users' subs must not collide")
	}
	for j, o := range ts.UserIssuers {
		if j != i && u.SubjectPrefix != "" && strings.HasPrefix(o.SubjectPrefix, u.SubjectPrefix) {
			p.Add(f+".subjectPrefix", "%q begins tokenService.userIssuers[%d].subjectPrefix %q: their users' subs could collide", u.SubjectPrefix, j, o.SubjectPrefix)
		}
	}
	validateScopes(p, f, u.Scopes)
}

// validateAccessTokens checks tokenService.accessTokens; td is the trust domain, zero when invalid.
func (ts *TokenServiceConfig) validateAccessTokens(p *confyaml.Problems, td spiffeid.TrustDomain) {
	for i, g := range ts.AccessTokens {
		f := fmt.Sprintf("tokenService.accessTokens[%d]", i)
		if g.Audience == "" {
			p.Add(f+".audience", "required: the API (audience or resource) the tokens are for")
		}
		if len(g.Workloads) == 0 {
			p.Add(f+".workloads", "required: the SPIFFE IDs that may get these tokens")
		}
		for j, w := range g.Workloads {
			p.WorkloadID(fmt.Sprintf("%s.workloads[%d]", f, j), w, td)
		}
		validateScopes(p, f, g.Scopes)
	}
}

// validateScopes checks the scopes of field f (f.scopes[i]).
func validateScopes(p *confyaml.Problems, f string, scopes []string) {
	for j, sc := range scopes {
		if !isScopeToken(sc) {
			p.Add(fmt.Sprintf("%s.scopes[%d]", f, j), "%q is not a scope token (RFC 6749 §3.3: printable ASCII, no space, quote or backslash)", sc)
		}
	}
}

// validate checks the ssf section, and reads the secret files it names.
func (s *SSFConfig) validate(p *confyaml.Problems) {
	listenAddr(p, "ssf.listen", s.Listen)
	if o := s.TransmitterObjects; o != nil {
		if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
			p.Add("ssf.transmitterObjects.namespace", "%q is not a namespace name (a DNS label); required unless state.kubernetes sets it", o.Namespace)
		}
	} else if len(s.Transmitters) == 0 {
		p.Add("ssf.transmitters", "at least one transmitter (or ssf.transmitterObjects, to trust those of SSFTransmitter objects)")
	}
	if t := s.TLS; t != nil {
		if t.Cert == "" {
			p.Add("ssf.tls.cert", "required: the PEM certificate chain the receiver serves")
		}
		if t.Key == "" {
			p.Add("ssf.tls.key", "required: the PEM private key of ssf.tls.cert")
		}
		if t.ReloadInterval < 0 {
			p.Add("ssf.tls.reloadInterval", "must not be negative")
		}
	}
	for i := range s.Transmitters {
		s.Transmitters[i].validate(p, fmt.Sprintf("ssf.transmitters[%d]", i))
	}
	s.Limits.Validate("ssf.limits", p.Add)
	s.RateLimit.Validate("ssf.rateLimit", p.Add)
}

// validate checks one transmitter (field f), and reads the secret files it names.
func (t *TransmitterConfig) validate(p *confyaml.Problems, f string) {
	p.Required(f+".issuer", t.Issuer)
	if len(t.Audience) == 0 {
		p.Add(f+".audience", "required")
	}
	if (t.JWKSFile == "") == (t.JWKSURL == "") && t.jwks == nil {
		p.Add(f+".jwksFile", "set exactly one of jwksFile and jwksURL")
	}
	t.pushAuthFile = p.Secret(f+".pushAuthorization", t.PushAuthorization, t.PushAuthorizationFile)
	streamPoll := t.Stream != nil && t.Stream.Delivery == "poll"
	if pc := t.Poll; pc != nil {
		pc.authFile = p.Secret(f+".poll.authorization", pc.Authorization, pc.AuthorizationFile)
		switch {
		case streamPoll && pc.URL != "":
			p.Add(f+".poll.url", "leave it out: stream.delivery is poll, so the stream names the poll endpoint")
		case !streamPoll && !isHTTPURL(pc.URL):
			p.Add(f+".poll.url", "%q is not an absolute http(s) URL (required unless stream.delivery is poll)", pc.URL)
		}
		if pc.Interval != 0 && pc.Interval < time.Second {
			p.Add(f+".poll.interval", "%v is under 1s", pc.Interval)
		}
		if pc.MaxEvents < 0 || pc.MaxEvents > 1000 {
			p.Add(f+".poll.maxEvents", "%d is outside 0..1000", pc.MaxEvents)
		}
	}
	if st := t.Stream; st != nil {
		st.validate(p, f+".stream")
	}
}

// validate checks a transmitter's stream (field f), and reads its secret file.
func (st *SSFStreamConfig) validate(p *confyaml.Problems, f string) {
	st.authFile = p.Secret(f+".authorization", st.Authorization, st.AuthorizationFile)
	switch st.Delivery {
	case "push":
		if !isHTTPURL(st.PushEndpoint) {
			p.Add(f+".pushEndpoint", "%q is not an absolute http(s) URL (required for push delivery)", st.PushEndpoint)
		}
	case "poll":
		if st.PushEndpoint != "" {
			p.Add(f+".pushEndpoint", "only for push delivery")
		}
	default:
		p.Add(f+".delivery", "%q is not push or poll", st.Delivery)
	}
	for _, e := range st.EventsRequested {
		if _, ok := signals.EventURI(e); !ok {
			p.Add(f+".eventsRequested", "%q is not a known CAEP, RISC or SSF event type", e)
		}
	}
}

// isScopeToken reports whether s is an RFC 6749 §3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ).
func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x21 || b > 0x7e || b == '"' || b == '\\' {
			return false
		}
	}
	return true
}

// accessTokenGrants returns tokenService.accessTokens as the token service takes them.
func (ts *TokenServiceConfig) accessTokenGrants() []oauth.AccessTokenGrant {
	grants := make([]oauth.AccessTokenGrant, 0, len(ts.AccessTokens))
	for _, g := range ts.AccessTokens {
		grants = append(grants, oauth.AccessTokenGrant{Workloads: g.Workloads, Audience: g.Audience, Scopes: g.Scopes})
	}
	return grants
}

// validateLocalIssuer checks issuer.localSocket and issuer.peerIDs; td is the trust domain, zero when invalid.
func (c *Config) validateLocalIssuer(p *confyaml.Problems, td spiffeid.TrustDomain) {
	is := c.Issuer
	switch {
	case is.LocalSocket == "" && len(is.PeerIDs) > 0:
		p.Add("issuer.peerIDs", "needs issuer.localSocket: uids attest only on the local socket")
	case is.LocalSocket == "":
		return
	case !filepath.IsAbs(is.LocalSocket):
		p.Add("issuer.localSocket", "%q is not an absolute path", is.LocalSocket)
	case len(is.LocalSocket) > maxUnixSocketPath:
		p.Add("issuer.localSocket", "%q is %d bytes, over the %d a Unix socket path may have", is.LocalSocket, len(is.LocalSocket), maxUnixSocketPath)
	case is.LocalSocket == c.Admin.Socket:
		p.Add("issuer.localSocket", "%q is also admin.socket", is.LocalSocket)
	}
	if is.LocalSocket != "" && len(is.PeerIDs) == 0 {
		p.Add("issuer.peerIDs", "required with issuer.localSocket: map at least one uid to a SPIFFE ID")
	}
	seen := map[uint32]int{}
	for i, pid := range is.PeerIDs {
		f := fmt.Sprintf("issuer.peerIDs[%d]", i)
		if pid.UID == nil {
			p.Add(f+".uid", "required: the Unix user id whose processes get spiffeID")
		} else if j, dup := seen[*pid.UID]; dup {
			p.Add(f+".uid", "uid %d is already mapped by issuer.peerIDs[%d]", *pid.UID, j)
		} else {
			seen[*pid.UID] = i
		}
		if id, ok := p.WorkloadID(f+".spiffeID", pid.SPIFFEID, td); ok && !td.IsZero() && slices.Contains(wire.ReservedIDs(td), id) {
			// A local user holding either could impersonate the controller to every sidecar.
			p.Add(f+".spiffeID", "%q is reserved for the controller itself", pid.SPIFFEID)
		}
	}
}

// peerIDs returns issuer.peerIDs as the issuer takes them; Validate has checked them.
func (c *Config) peerIDs() (map[uint32]spiffeid.ID, error) {
	m := make(map[uint32]spiffeid.ID, len(c.Issuer.PeerIDs))
	for i, p := range c.Issuer.PeerIDs {
		id, err := spiffeid.FromString(p.SPIFFEID)
		if err != nil || p.UID == nil {
			return nil, fmt.Errorf("issuer.peerIDs[%d]: invalid; validate the config first", i)
		}
		m[*p.UID] = id
	}
	return m, nil
}

// receiverConfig is the transmitter as the SSF receiver trusts it.
func (t *TransmitterConfig) receiverConfig() signals.TransmitterConfig {
	return signals.TransmitterConfig{Issuer: t.Issuer, Audience: t.Audience, JWKSFile: t.JWKSFile, JWKSURL: t.JWKSURL,
		JWKS: t.jwks, JWKSSource: t.jwksSource, PushAuthorization: t.pushAuthorization()}
}

// pushAuthorization is the Authorization every push from the transmitter must carry ("" for none).
func (t *TransmitterConfig) pushAuthorization() string {
	return cmp.Or(t.pushAuthFile, t.PushAuthorization)
}

// authorization is the Authorization header of polls ("" for none, then the stream's applies).
func (p *SSFPollConfig) authorization() string { return cmp.Or(p.authFile, p.Authorization) }

// authorization is the Authorization header of stream management calls.
func (s *SSFStreamConfig) authorization() string { return cmp.Or(s.authFile, s.Authorization) }

func isHTTPURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}
