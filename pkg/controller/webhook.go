package controller

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/internal/netlimit"
	"github.com/agentauth/agentauth/pkg/crd"
	"github.com/agentauth/agentauth/pkg/inject"
	"github.com/agentauth/agentauth/pkg/issuer"
)

// WebhookConfig serves the Kubernetes injector (pkg/inject): the mutating admission webhook that adds the
// sidecar to pods that ask for it.
type WebhookConfig struct {
	// Listen is where the API server reaches the webhook (HTTPS), e.g. :9443.
	Listen string `yaml:"listen"`
	// DNSNames are the webhook Service's names, e.g. agentauth-webhook.agentauth.svc: the serving certificate,
	// issued from the controller's CA, names them.
	DNSNames []string `yaml:"dnsNames,omitempty"`
	// CertTTL is the serving certificate's lifetime (default 24h; renewed at half of it).
	CertTTL time.Duration `yaml:"certTTL,omitempty"`
	// CertManager, instead, serves the certificate cert-manager writes (its Secret mounted as files): the
	// controller then issues none and leaves the caBundle to cert-manager's CA injector.
	CertManager *TLSFilesConfig `yaml:"certManager,omitempty"`
	// CABundle, when set (and not CertManager), keeps the caBundle of the named MutatingWebhookConfiguration
	// equal to the controller's CA certificate, through the Kubernetes API.
	CABundle *WebhookCABundleConfig `yaml:"caBundle,omitempty"`
	// Injection is what goes into pods (pkg/inject Values).
	Injection inject.Values   `yaml:"injection"`
	Limits    netlimit.Config `yaml:"limits,omitempty"`
}

// WebhookCABundleConfig names the webhook configurations whose caBundle the controller keeps current.
type WebhookCABundleConfig struct {
	WebhookConfiguration string `yaml:"webhookConfiguration"`
	// ValidatingWebhookConfiguration, when set, is the ValidatingWebhookConfiguration of the CedarPolicy
	// objects (policy.source crd), served by the same server.
	ValidatingWebhookConfiguration string `yaml:"validatingWebhookConfiguration,omitempty"`
	// Kubeconfig is a kubeconfig file; empty means the pod's in-cluster service account.
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
}

func (w *WebhookConfig) setDefaults(trustDomain string) {
	if w.CertTTL == 0 {
		w.CertTTL = 24 * time.Hour
	}
	if w.Injection.TrustDomain == "" {
		w.Injection.TrustDomain = trustDomain
	}
	w.Injection.SetDefaults()
	w.Limits = w.Limits.WithDefaults(defaultHTTPLimits)
}

func (w *WebhookConfig) validate(add func(field, format string, args ...any)) {
	if _, _, err := net.SplitHostPort(w.Listen); err != nil {
		add("webhook.listen", "%q is not host:port", w.Listen)
	}
	if w.CertManager != nil {
		if w.CertManager.Cert == "" || w.CertManager.Key == "" {
			add("webhook.certManager", "cert and key are required: the files of cert-manager's Secret")
		}
		if w.CABundle != nil {
			add("webhook.caBundle", "leave it out with certManager: cert-manager's CA injector keeps the caBundle")
		}
	} else {
		if len(w.DNSNames) == 0 {
			add("webhook.dnsNames", "required: the webhook Service's DNS names the serving certificate is issued for")
		}
		for i, n := range w.DNSNames {
			if !issuer.IsDNSName(n) {
				add(fmt.Sprintf("webhook.dnsNames[%d]", i), "%q is not a lower-case DNS name", n)
			}
		}
		if w.CertTTL < time.Minute || w.CertTTL > issuer.DefaultMaxTTL {
			add("webhook.certTTL", "%v is not within 1m..%v", w.CertTTL, issuer.DefaultMaxTTL)
		}
	}
	if b := w.CABundle; b != nil && b.WebhookConfiguration == "" {
		add("webhook.caBundle.webhookConfiguration", "required: the MutatingWebhookConfiguration's name")
	}
	w.Limits.Validate("webhook.limits", add)
	n := 0
	w.Injection.Validate("webhook.injection", func(field, format string, args ...any) { n++; add(field, format, args...) })
	if n == 0 {
		// The values as a whole: their identity and controller sections must make a sidecar config that loads.
		if _, err := inject.New(w.Injection, func() []byte { return nil }); err != nil {
			add("webhook.injection", "%v", err)
		}
	}
}

// PathValidateCedarPolicy is the validating admission webhook of CedarPolicy objects, served beside the injector
// with policy.source crd.
const PathValidateCedarPolicy = "/validate/cedarpolicy"

// newWebhook builds the injector's server; Run starts it.
func (c *Controller) newWebhook(ctx context.Context) (*inject.Server, error) {
	w := c.cfg.Webhook
	// Every root the CA trusts: a prepared one is in the caBundle before it signs the serving certificate, and a
	// retired one until it expires, as the certificate it signed may still be served.
	bundle := func() []byte { return rootsPEM(c.ca) }
	in, err := inject.New(w.Injection, bundle)
	if err != nil {
		return nil, fmt.Errorf("webhook.injection: %w", err)
	}
	sc := inject.ServerConfig{Listen: w.Listen, Injector: in, Limits: w.Limits, Log: c.log.Named("inject")}
	if c.policies != nil {
		sc.Handlers = map[string]http.Handler{
			PathValidateCedarPolicy: crd.Validator("CedarPolicy", c.policies.admit, c.log.Named("cedarpolicies")),
		}
	}
	if cm := w.CertManager; cm != nil {
		sc.CertFile, sc.KeyFile = cm.Cert, cm.Key
	} else {
		sc.DNSNames, sc.Issue, sc.CertTTL = w.DNSNames, c.ca.IssueServingCert, w.CertTTL
	}
	if b := w.CABundle; b != nil {
		client, err := kubeClient(b.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("webhook.caBundle: %w", err)
		}
		sc.Keeper = &inject.BundleKeeper{Client: client, Name: b.WebhookConfiguration, Validating: b.ValidatingWebhookConfiguration,
			Bundle: bundle, Log: c.log.Named("inject")}
	}
	s, err := inject.NewServer(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	return s, nil
}

// webhookServer is the injector's component: the admission webhook the API server calls, its serving certificate
// and the caBundle it keeps current.
type webhookServer struct {
	c   *Controller
	srv *inject.Server
}

func (w *webhookServer) provision(ctx context.Context) (err error) {
	if w.srv, err = w.c.newWebhook(ctx); err != nil {
		return err
	}
	w.c.onClose(func() { _ = w.srv.Close() })
	return nil
}

func (w *webhookServer) start(ctx context.Context, fail func(error)) error {
	if err := w.srv.Start(ctx); err != nil {
		return err
	}
	go func() {
		select {
		case err := <-w.srv.Err():
			fail(err)
		case <-ctx.Done():
		}
	}()
	return nil
}

func (w *webhookServer) stop(context.Context) { _ = w.srv.Close() }

func (w *webhookServer) validate(p *confyaml.Problems) {
	w.c.cfg.Webhook.validate(p.Add)
	if b := w.c.cfg.Webhook.CABundle; b != nil && b.ValidatingWebhookConfiguration != "" && !w.c.cfg.Policy.fromCRD() {
		p.Add("webhook.caBundle.validatingWebhookConfiguration", "only with policy.source %s: the webhook checks CedarPolicy objects", PolicySourceCRD)
	}
}

func (w *webhookServer) logFields() []zap.Field {
	return []zap.Field{zap.String("webhook", w.srv.Addr().String())}
}

var (
	_ component = (*webhookServer)(nil)
	_ validator = (*webhookServer)(nil)
	_ serving   = (*webhookServer)(nil)
)
