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

	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/internal/netlimit"
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
	TLS          *TLSFilesConfig     `yaml:"tls,omitempty"`
	Transmitters []TransmitterConfig `yaml:"transmitters"`
	// Limits bound Listen's connections and requests.
	Limits netlimit.Config `yaml:"limits,omitempty"`
	// RateLimit bounds pushes per client IP: they are read before their SETs are verified.
	RateLimit netlimit.RateConfig `yaml:"rateLimit,omitempty"`
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
	if c.Issuer.Keys == "" {
		c.Issuer.Keys = "file"
	}
	if c.Issuer.Keys == "tpm" && c.Issuer.TPMDevice == "" {
		c.Issuer.TPMDevice = "/dev/tpmrm0"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
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
	}
	if c.Webhook != nil {
		c.Webhook.setDefaults(c.TrustDomain)
	}
}

// Validate returns every problem found, each naming its field.
func (c *Config) Validate() error {
	var problems confyaml.Problems
	add := problems.Add
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
		add("trustDomain", "%q: %v", c.TrustDomain, err)
	}
	if c.DataDir == "" {
		add("dataDir", "required: where state, keys and bundle.pem live")
	}
	for _, l := range []struct{ field, addr string }{
		{"issuer.listen", c.Issuer.Listen}, {"xds.listen", c.XDS.Listen}, {"ops.listen", c.Ops.Listen},
	} {
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			add(l.field, "%q is not host:port", l.addr)
		}
	}
	if ts := c.TokenService; ts != nil {
		host, _, err := net.SplitHostPort(ts.Listen)
		if err != nil {
			add("tokenService.listen", "%q is not host:port", ts.Listen)
		}
		if ts.Endpoint != "" {
			if u, err := url.Parse(ts.Endpoint); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
				add("tokenService.endpoint", "%q is not an https:// URL without query or fragment", ts.Endpoint)
			}
		} else if ip := net.ParseIP(host); err == nil && (host == "" || ip != nil && ip.IsUnspecified()) {
			add("tokenService.endpoint", "required when listen is %q: agents cannot reach an unspecified address, "+
				"and their proofs must name the URL they do reach (e.g. https://controller.example.org:8445/token)", ts.Listen)
		}
		for i, u := range ts.UserIssuers {
			f := fmt.Sprintf("tokenService.userIssuers[%d]", i)
			if u.Issuer == "" || len(u.Audiences) == 0 || u.JWKSFile == "" {
				add(f, "issuer, audiences and jwksFile are required")
			}
			switch {
			case strings.HasPrefix(u.SubjectPrefix, "spiffe:"):
				add(f+".subjectPrefix", "%q would make users look like workloads", u.SubjectPrefix)
			case len(ts.UserIssuers) > 1 && u.SubjectPrefix == "":
				add(f+".subjectPrefix", "required with several userIssuers: their users' subs must not collide")
			}
			for j, o := range ts.UserIssuers {
				if j != i && u.SubjectPrefix != "" && strings.HasPrefix(o.SubjectPrefix, u.SubjectPrefix) {
					add(f+".subjectPrefix", "%q begins tokenService.userIssuers[%d].subjectPrefix %q: their users' subs could collide", u.SubjectPrefix, j, o.SubjectPrefix)
				}
			}
			for j, sc := range u.Scopes {
				if !isScopeToken(sc) {
					add(fmt.Sprintf("%s.scopes[%d]", f, j), "%q is not a scope token (RFC 6749 §3.3: printable ASCII, no space, quote or backslash)", sc)
				}
			}
		}
		c.validateAccessTokens(add)
	}
	if c.Webhook != nil {
		c.Webhook.validate(add)
	}
	if s := c.SSF; s != nil {
		if _, _, err := net.SplitHostPort(s.Listen); err != nil {
			add("ssf.listen", "%q is not host:port", s.Listen)
		}
		if len(s.Transmitters) == 0 {
			add("ssf.transmitters", "at least one transmitter")
		}
		if t := s.TLS; t != nil {
			if t.Cert == "" {
				add("ssf.tls.cert", "required: the PEM certificate chain the receiver serves")
			}
			if t.Key == "" {
				add("ssf.tls.key", "required: the PEM private key of ssf.tls.cert")
			}
			if t.ReloadInterval < 0 {
				add("ssf.tls.reloadInterval", "must not be negative")
			}
		}
		for i, t := range s.Transmitters {
			f := fmt.Sprintf("ssf.transmitters[%d]", i)
			if t.Issuer == "" {
				add(f+".issuer", "required")
			}
			if len(t.Audience) == 0 {
				add(f+".audience", "required")
			}
			if (t.JWKSFile == "") == (t.JWKSURL == "") {
				add(f+".jwksFile", "set exactly one of jwksFile and jwksURL")
			}
			s.Transmitters[i].pushAuthFile = readSecret(add, f+".pushAuthorization", t.PushAuthorization, t.PushAuthorizationFile)
			streamPoll := t.Stream != nil && t.Stream.Delivery == "poll"
			if p := t.Poll; p != nil {
				p.authFile = readSecret(add, f+".poll.authorization", p.Authorization, p.AuthorizationFile)
				switch {
				case streamPoll && p.URL != "":
					add(f+".poll.url", "leave it out: stream.delivery is poll, so the stream names the poll endpoint")
				case !streamPoll && !isHTTPURL(p.URL):
					add(f+".poll.url", "%q is not an absolute http(s) URL (required unless stream.delivery is poll)", p.URL)
				}
				if p.Interval != 0 && p.Interval < time.Second {
					add(f+".poll.interval", "%v is under 1s", p.Interval)
				}
				if p.MaxEvents < 0 || p.MaxEvents > 1000 {
					add(f+".poll.maxEvents", "%d is outside 0..1000", p.MaxEvents)
				}
			}
			if st := t.Stream; st != nil {
				st.authFile = readSecret(add, f+".stream.authorization", st.Authorization, st.AuthorizationFile)
				switch st.Delivery {
				case "push":
					if !isHTTPURL(st.PushEndpoint) {
						add(f+".stream.pushEndpoint", "%q is not an absolute http(s) URL (required for push delivery)", st.PushEndpoint)
					}
				case "poll":
					if st.PushEndpoint != "" {
						add(f+".stream.pushEndpoint", "only for push delivery")
					}
				default:
					add(f+".stream.delivery", "%q is not push or poll", st.Delivery)
				}
				for _, e := range st.EventsRequested {
					if _, ok := signals.EventURI(e); !ok {
						add(f+".stream.eventsRequested", "%q is not a known CAEP, RISC or SSF event type", e)
					}
				}
			}
		}
	}
	if c.Admin.Socket == "" {
		add("admin.socket", "required: the Unix socket agentauthctl uses")
	} else if len(c.Admin.Socket) > maxPrivateSocketPath {
		add("admin.socket", "%q is %d bytes, over the %d a Unix socket path may have here (it is bound in a private "+
			"directory beside it first)", c.Admin.Socket, len(c.Admin.Socket), maxPrivateSocketPath)
	}
	c.Issuer.Limits.Validate("issuer.limits", add)
	c.Issuer.RateLimit.Validate("issuer.rateLimit", add)
	c.XDS.Limits.Validate("xds.limits", add)
	c.Ops.Limits.Validate("ops.limits", add)
	c.Admin.Limits.Validate("admin.limits", add)
	if ts := c.TokenService; ts != nil {
		ts.Limits.Validate("tokenService.limits", add)
		ts.RateLimit.Validate("tokenService.rateLimit", add)
	}
	if s := c.SSF; s != nil {
		s.Limits.Validate("ssf.limits", add)
		s.RateLimit.Validate("ssf.rateLimit", add)
	}
	if c.Issuer.SVIDTTL < MinSVIDTTL || c.Issuer.SVIDTTL > 24*time.Hour {
		add("issuer.svidTTL", "%v is outside %v..24h (credentials are meant to be short-lived)", c.Issuer.SVIDTTL, MinSVIDTTL)
	}
	if c.Issuer.Keys != "file" && c.Issuer.Keys != "tpm" {
		add("issuer.keys", "%q is not file or tpm", c.Issuer.Keys)
	}
	c.validateLocalIssuer(add)
	if k := c.Issuer.Kubernetes; k != nil {
		k.Validate("issuer.kubernetes", add)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	return problems.Err("controller config")
}

// validateAccessTokens checks tokenService.accessTokens.
func (c *Config) validateAccessTokens(add func(field, format string, args ...any)) {
	td, tdErr := spiffeid.TrustDomainFromString(c.TrustDomain)
	for i, g := range c.TokenService.AccessTokens {
		f := fmt.Sprintf("tokenService.accessTokens[%d]", i)
		if g.Audience == "" {
			add(f+".audience", "required: the API (audience or resource) the tokens are for")
		}
		if len(g.Workloads) == 0 {
			add(f+".workloads", "required: the SPIFFE IDs that may get these tokens")
		}
		for j, w := range g.Workloads {
			id, err := spiffeid.FromString(w)
			switch {
			case err != nil:
				add(fmt.Sprintf("%s.workloads[%d]", f, j), "%q: %v", w, err)
			case id.Path() == "":
				add(fmt.Sprintf("%s.workloads[%d]", f, j), "%q names a trust domain, not a workload", w)
			case tdErr == nil && id.TrustDomain() != td:
				add(fmt.Sprintf("%s.workloads[%d]", f, j), "%q is not in trust domain %q", w, td)
			}
		}
		for j, sc := range g.Scopes {
			if !isScopeToken(sc) {
				add(fmt.Sprintf("%s.scopes[%d]", f, j), "%q is not a scope token (RFC 6749 §3.3: printable ASCII, no space, quote or backslash)", sc)
			}
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

// validateLocalIssuer checks issuer.localSocket and issuer.peerIDs.
func (c *Config) validateLocalIssuer(add func(field, format string, args ...any)) {
	is := c.Issuer
	switch {
	case is.LocalSocket == "" && len(is.PeerIDs) > 0:
		add("issuer.peerIDs", "needs issuer.localSocket: uids attest only on the local socket")
	case is.LocalSocket == "":
		return
	case !filepath.IsAbs(is.LocalSocket):
		add("issuer.localSocket", "%q is not an absolute path", is.LocalSocket)
	case len(is.LocalSocket) > maxUnixSocketPath:
		add("issuer.localSocket", "%q is %d bytes, over the %d a Unix socket path may have", is.LocalSocket, len(is.LocalSocket), maxUnixSocketPath)
	case is.LocalSocket == c.Admin.Socket:
		add("issuer.localSocket", "%q is also admin.socket", is.LocalSocket)
	}
	if is.LocalSocket != "" && len(is.PeerIDs) == 0 {
		add("issuer.peerIDs", "required with issuer.localSocket: map at least one uid to a SPIFFE ID")
	}
	td, tdErr := spiffeid.TrustDomainFromString(c.TrustDomain)
	seen := map[uint32]int{}
	for i, p := range is.PeerIDs {
		f := fmt.Sprintf("issuer.peerIDs[%d]", i)
		if p.UID == nil {
			add(f+".uid", "required: the Unix user id whose processes get spiffeID")
		} else if j, dup := seen[*p.UID]; dup {
			add(f+".uid", "uid %d is already mapped by issuer.peerIDs[%d]", *p.UID, j)
		} else {
			seen[*p.UID] = i
		}
		id, err := spiffeid.FromString(p.SPIFFEID)
		switch {
		case err != nil:
			add(f+".spiffeID", "%q: %v", p.SPIFFEID, err)
		case id.Path() == "":
			add(f+".spiffeID", "%q names a trust domain, not a workload", p.SPIFFEID)
		case tdErr == nil && id.TrustDomain() != td:
			add(f+".spiffeID", "%q is not in trust domain %q", p.SPIFFEID, td)
		case tdErr == nil && slices.Contains(wire.ReservedIDs(td), id):
			// A local user holding either could impersonate the controller to every sidecar.
			add(f+".spiffeID", "%q is reserved for the controller itself", p.SPIFFEID)
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

// readSecret checks a secret given inline (field) or in a file (field+"File") and returns the file's contents:
// Validate reads secret files, so that a missing or empty one is a config error with its line, not a failure
// at start.
func readSecret(add func(field, format string, args ...any), field, inline, file string) string {
	switch {
	case file == "":
		return ""
	case inline != "":
		key := field[strings.LastIndexByte(field, '.')+1:]
		add(field+"File", "set %s or %sFile, not both", key, key)
		return ""
	}
	s, err := confyaml.ReadSecret(file)
	if err != nil {
		add(field+"File", "%v", err)
	}
	return s
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
