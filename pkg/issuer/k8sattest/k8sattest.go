package k8sattest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/issuer"
)

// DefaultSPIFFEIDTemplate is the path of the SPIFFE ID a pod gets when Config.SPIFFEIDTemplate is empty.
const DefaultSPIFFEIDTemplate = "/ns/{namespace}/sa/{serviceAccount}"

// The placeholders of a SPIFFE ID template; both must appear, so that no two service accounts share an ID.
const (
	placeholderNamespace      = "{namespace}"
	placeholderServiceAccount = "{serviceAccount}"
)

// The user-info extras the API server sets for a token bound to a pod (TokenRequest with a Pod boundObjectRef, as
// the kubelet's projected tokens are).
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// maxTokenSize bounds a presented token; service-account tokens are about 1 KB.
const maxTokenSize = 16 << 10

// saUserPrefix starts the user name of a service account.
const saUserPrefix = "system:serviceaccount:"

// apiTimeout bounds each call to the API server, so an unreachable one is an answer, not a hang.
const apiTimeout = 10 * time.Second

// Config is the controller's issuer.kubernetes section.
type Config struct {
	// Audience is the audience sidecars' projected tokens are made for (the chart's projected volume uses the
	// same value); the API server checks it, and a token for any other audience is refused. Required.
	Audience string `yaml:"audience"`
	// Kubeconfig is a kubeconfig file for the API server; empty means in-cluster (the pod's own service account).
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
	// SPIFFEIDTemplate is the path of the SPIFFE ID issued, with {namespace} and {serviceAccount} (both
	// required); default DefaultSPIFFEIDTemplate.
	SPIFFEIDTemplate string `yaml:"spiffeIDTemplate,omitempty"`
	// AllowUnboundTokens accepts tokens that are not bound to a pod (a TokenRequest without a boundObjectRef,
	// made by whoever may create tokens for the service account). Off by default: the kubelet's projected tokens
	// are always bound to their pod, and only a bound token proves a pod is running.
	AllowUnboundTokens bool `yaml:"allowUnboundTokens,omitempty"`
}

// Validate reports each problem of c through add, naming the field under prefix (e.g. "issuer.kubernetes").
func (c Config) Validate(prefix string, add func(field, format string, args ...any)) {
	if c.Audience == "" {
		add(prefix+".audience", "is required: the audience of the sidecars' projected service-account tokens")
	}
	if err := checkTemplate(c.template()); err != nil {
		add(prefix+".spiffeIDTemplate", "%v", err)
	}
}

func (c Config) template() string {
	if c.SPIFFEIDTemplate == "" {
		return DefaultSPIFFEIDTemplate
	}
	return c.SPIFFEIDTemplate
}

// checkTemplate checks that tmpl has both placeholders, no others, and makes a valid SPIFFE ID path.
func checkTemplate(tmpl string) error {
	for _, p := range []string{placeholderNamespace, placeholderServiceAccount} {
		if strings.Count(tmpl, p) != 1 {
			return fmt.Errorf("%q must contain %s exactly once", tmpl, p)
		}
	}
	rest := strings.NewReplacer(placeholderNamespace, "", placeholderServiceAccount, "").Replace(tmpl)
	if strings.ContainsAny(rest, "{}") {
		return fmt.Errorf("%q has a placeholder other than %s and %s", tmpl, placeholderNamespace, placeholderServiceAccount)
	}
	sample := render(tmpl, "ns", "sa")
	if err := spiffeid.ValidatePath(sample); err != nil {
		return fmt.Errorf("%q does not make a SPIFFE ID path (%q: %v)", tmpl, sample, err)
	}
	return nil
}

func render(tmpl, namespace, serviceAccount string) string {
	return strings.NewReplacer(placeholderNamespace, namespace, placeholderServiceAccount, serviceAccount).Replace(tmpl)
}

// Attestor checks service-account tokens through the Kubernetes API; it implements issuer.TokenAttestor.
type Attestor struct {
	client       kubernetes.Interface
	td           spiffeid.TrustDomain
	audience     string
	template     string
	allowUnbound bool
	log          *zap.Logger
	results      *prometheus.CounterVec
	now          func() time.Time
}

// Options are what New needs besides the Config.
type Options struct {
	// Client talks to the API server; required.
	Client kubernetes.Interface
	// TrustDomain of the SPIFFE IDs issued; required.
	TrustDomain spiffeid.TrustDomain
	// Logger gets a line per refusal; nil discards them.
	Logger *zap.Logger
	// Registerer, when set, gets agentauth_kubernetes_attestations_total{result}: "ok" or the refusal's reason.
	Registerer prometheus.Registerer
}

// New returns an Attestor for cfg, which must be valid (Config.Validate).
func New(cfg Config, opts Options) (*Attestor, error) {
	var problems []string
	cfg.Validate("kubernetes", func(field, format string, args ...any) {
		problems = append(problems, field+": "+fmt.Sprintf(format, args...))
	})
	if opts.Client == nil || opts.TrustDomain.IsZero() {
		problems = append(problems, "Options need a Client and a TrustDomain")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("k8sattest: %s", strings.Join(problems, "; "))
	}
	a := &Attestor{client: opts.Client, td: opts.TrustDomain, audience: cfg.Audience, template: cfg.template(),
		allowUnbound: cfg.AllowUnboundTokens, log: opts.Logger, now: time.Now,
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentauth_kubernetes_attestations_total",
			Help: "Attestations with Kubernetes service-account tokens, by result: ok, or the refusal's reason code.",
		}, []string{"result"})}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(a.results); err != nil {
			return nil, fmt.Errorf("k8sattest: registering metrics: %w", err)
		}
	}
	return a, nil
}

// AttestToken implements issuer.TokenAttestor: it returns the SPIFFE ID of the pod whose service-account token
// this is, or a refusal wrapping its autherr reason (autherr.ErrUpstream when the API server cannot be asked).
func (a *Attestor) AttestToken(ctx context.Context, token string) (spiffeid.ID, error) {
	id, sub, err := a.attest(ctx, token)
	result := "ok"
	if err != nil {
		result = autherr.Code(err)
		fields := []zap.Field{zap.String("reason", result), zap.String("subject", sub), zap.Error(err)}
		if errors.Is(err, autherr.ErrUpstream) || autherr.Of(err) == nil {
			a.log.Error("Kubernetes attestation failed: the API server could not check the token", fields...)
		} else {
			a.log.Warn("Kubernetes attestation refused", fields...)
		}
	}
	a.results.WithLabelValues(result).Inc()
	return id, err
}

// attest does AttestToken's work; sub names the workload as far as it is known, for the log.
func (a *Attestor) attest(ctx context.Context, token string) (id spiffeid.ID, sub string, err error) {
	if err := a.precheck(token); err != nil {
		return spiffeid.ID{}, "", err
	}
	callCtx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	review, err := a.client.AuthenticationV1().TokenReviews().Create(callCtx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{a.audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return spiffeid.ID{}, "", fmt.Errorf("k8sattest: %w: TokenReview: the Kubernetes API server cannot check the token: %v", autherr.ErrUpstream, err)
	}
	st := review.Status
	if !st.Authenticated {
		return spiffeid.ID{}, "", fmt.Errorf("k8sattest: %w: the Kubernetes API server rejected the token: %s", autherr.ErrDenied, st.Error)
	}
	sub = st.User.Username
	if !slices.Contains(st.Audiences, a.audience) {
		return spiffeid.ID{}, sub, fmt.Errorf("k8sattest: %w: the token is not for audience %q", autherr.ErrWrongAudience, a.audience)
	}
	namespace, serviceAccount, err := splitServiceAccount(sub)
	if err != nil {
		return spiffeid.ID{}, sub, err
	}
	if err := a.checkPod(ctx, namespace, serviceAccount, st.User.Extra); err != nil {
		return spiffeid.ID{}, sub, err
	}
	id, err = spiffeid.FromPath(a.td, render(a.template, namespace, serviceAccount))
	if err != nil {
		return spiffeid.ID{}, sub, fmt.Errorf("k8sattest: SPIFFE ID of %s: %w", sub, err)
	}
	return id, sub, nil
}

// precheck refuses, without asking the API server, a token that is too large, is not a JWT, is not for our
// audience, or has expired. Its claims are not verified here: they only ever refuse, and the API server decides
// what is accepted. The refusal then names the precise reason.
func (a *Attestor) precheck(token string) error {
	if len(token) > maxTokenSize {
		return fmt.Errorf("k8sattest: %w: token is %d bytes, at most %d", autherr.ErrTooLarge, len(token), maxTokenSize)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256,
		jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA})
	if err != nil {
		return fmt.Errorf("k8sattest: %w: the token is not a signed JWT: %v", autherr.ErrMalformed, err)
	}
	var claims jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return fmt.Errorf("k8sattest: %w: the token's claims: %v", autherr.ErrMalformed, err)
	}
	if !claims.Audience.Contains(a.audience) {
		return fmt.Errorf("k8sattest: %w: the token is for %q, not %q (the sidecar needs a projected token with the controller's audience)", autherr.ErrWrongAudience, []string(claims.Audience), a.audience)
	}
	if claims.Expiry != nil && !a.now().Before(claims.Expiry.Time()) {
		return fmt.Errorf("k8sattest: %w: the token expired at %s", autherr.ErrExpired, claims.Expiry.Time().UTC().Format(time.RFC3339))
	}
	return nil
}

// splitServiceAccount returns the namespace and name of a service account's user name.
func splitServiceAccount(user string) (namespace, name string, err error) {
	rest, ok := strings.CutPrefix(user, saUserPrefix)
	if ok {
		namespace, name, ok = strings.Cut(rest, ":")
	}
	if !ok || len(validation.IsDNS1123Label(namespace)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return "", "", fmt.Errorf("k8sattest: %w: %q is not a service account", autherr.ErrDenied, user)
	}
	return namespace, name, nil
}

// checkPod checks the pod a token is bound to: it still exists, is the same pod (uid), runs as the token's
// service account, and is neither finished nor being deleted. A token bound to no pod passes only with
// AllowUnboundTokens.
func (a *Attestor) checkPod(ctx context.Context, namespace, serviceAccount string, extra map[string]authenticationv1.ExtraValue) error {
	name, uid := one(extra[extraPodName]), one(extra[extraPodUID])
	if name == "" || uid == "" {
		if a.allowUnbound {
			return nil
		}
		return fmt.Errorf("k8sattest: %w: the token of %s/%s is not bound to a pod (a pod's projected token is; set allowUnboundTokens to accept others)", autherr.ErrMismatch, namespace, serviceAccount)
	}
	callCtx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	pod, err := a.client.CoreV1().Pods(namespace).Get(callCtx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("k8sattest: %w: pod %s/%s, which the token is bound to, no longer exists", autherr.ErrRevoked, namespace, name)
	case err != nil:
		return fmt.Errorf("k8sattest: %w: reading pod %s/%s: %v", autherr.ErrUpstream, namespace, name, err)
	case string(pod.UID) != uid:
		return fmt.Errorf("k8sattest: %w: pod %s/%s is uid %s, the token is bound to uid %s (the pod was replaced)", autherr.ErrRevoked, namespace, name, pod.UID, uid)
	case pod.Spec.ServiceAccountName != serviceAccount:
		return fmt.Errorf("k8sattest: %w: pod %s/%s runs as service account %q, the token is for %q", autherr.ErrMismatch, namespace, name, pod.Spec.ServiceAccountName, serviceAccount)
	case pod.DeletionTimestamp != nil:
		return fmt.Errorf("k8sattest: %w: pod %s/%s is being deleted", autherr.ErrRevoked, namespace, name)
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return fmt.Errorf("k8sattest: %w: pod %s/%s has finished (%s)", autherr.ErrRevoked, namespace, name, pod.Status.Phase)
	}
	return nil
}

func one(v authenticationv1.ExtraValue) string {
	if len(v) != 1 {
		return ""
	}
	return v[0]
}

var _ issuer.TokenAttestor = (*Attestor)(nil)
