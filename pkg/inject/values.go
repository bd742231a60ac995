package inject

import (
	"fmt"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/agentauth/agentauth/pkg/inject/redirect"
	"github.com/agentauth/agentauth/pkg/sidecar"
	"github.com/agentauth/agentauth/pkg/wire"
)

// Values are the operator's injection settings (the controller's webhook.injection, from the chart's
// injector.sidecar values): the template renders them with each pod's annotations. Field names are the YAML keys.
type Values struct {
	// Image is the sidecar image; the redirect init step runs the same image (`sidecar redirect install`).
	Image           string `yaml:"image"`
	ImagePullPolicy string `yaml:"imagePullPolicy,omitempty"`
	// TrustDomain is the controller's: an ingress sidecar accepts mTLS callers of this trust domain.
	TrustDomain string `yaml:"trustDomain"`
	// UID is the uid the sidecar runs as: the redirect rules leave its traffic alone, so no other container of the
	// pod may run as it (default 1337, not the image's 65532, which many agent images use too).
	UID int64 `yaml:"uid,omitempty"`
	// Mode is the default proof mode: of routes that list none, and what the ingress role requires (default mtls).
	Mode string `yaml:"mode,omitempty"`
	// Ports of the sidecar in the pod (defaults 15001, 15006, 15021). AdminPort serves the probes on all
	// addresses (the kubelet probes the pod's IP).
	TransparentPort uint16 `yaml:"transparentPort,omitempty"`
	IngressPort     uint16 `yaml:"ingressPort,omitempty"`
	AdminPort       uint16 `yaml:"adminPort,omitempty"`
	// ExcludeOutboundPorts and ExcludeOutboundCIDRs are never redirected, in every pod (annotations add more).
	ExcludeOutboundPorts []uint16 `yaml:"excludeOutboundPorts,omitempty"`
	ExcludeOutboundCIDRs []string `yaml:"excludeOutboundCIDRs,omitempty"`
	// Resources of the sidecar container: requests and limits by resource name (cpu, memory).
	Resources Resources `yaml:"resources,omitempty"`
	// Audience and TokenExpirationSeconds of the projected service-account token the sidecar attests with
	// (defaults agentauth and 3600).
	Audience               string `yaml:"audience,omitempty"`
	TokenExpirationSeconds int64  `yaml:"tokenExpirationSeconds,omitempty"`
	// Identity is the sidecar's identity section, e.g. controller: {address, bundle: /var/run/agentauth/identity/
	// bundle.pem, kubernetesTokenFile: /var/run/agentauth/identity/token, stateDir: /var/run/agentauth/state}, or
	// workloadAPI with SPIRE.
	Identity sidecar.IdentityConfig `yaml:"identity"`
	// Controller is the sidecar's xDS endpoint (policy, revocations).
	Controller *sidecar.ControlPlaneConfig `yaml:"controller,omitempty"`
	// Routes are the egress routes of pods without an agentauth.io/routes annotation.
	Routes []sidecar.RouteConfig `yaml:"routes,omitempty"`
	// SPIRE, when set, mounts the SPIRE agent's socket directory into the sidecar.
	SPIRE *SPIREValues `yaml:"spire,omitempty"`

	excludeCIDRs []netip.Prefix
}

// Resources are a container's requests and limits, as quantities (100m, 64Mi).
type Resources struct {
	Requests map[string]string `yaml:"requests,omitempty"`
	Limits   map[string]string `yaml:"limits,omitempty"`
}

// SPIREValues say how the SPIRE agent's socket directory reaches the sidecar: the SPIFFE CSI driver or a
// hostPath directory.
type SPIREValues struct {
	SocketDir string `yaml:"socketDir"`
	CSIDriver string `yaml:"csiDriver,omitempty"`
	HostPath  string `yaml:"hostPath,omitempty"`
}

// Paths in the sidecar container that the template mounts.
const (
	IdentityDir = "/var/run/agentauth/identity"
	StateDir    = "/var/run/agentauth/state"
)

// DefaultUID is the sidecar's default uid in injected pods.
const DefaultUID = 1337

// SetDefaults fills every unset field that has a default.
func (v *Values) SetDefaults() {
	if v.UID == 0 {
		v.UID = DefaultUID
	}
	if v.Mode == "" {
		v.Mode = wire.ModeMTLS.String()
	}
	if v.ImagePullPolicy == "" {
		v.ImagePullPolicy = "IfNotPresent"
	}
	if v.TransparentPort == 0 {
		v.TransparentPort = redirect.DefaultOutboundPort
	}
	if v.IngressPort == 0 {
		v.IngressPort = redirect.DefaultInboundPort
	}
	if v.AdminPort == 0 {
		v.AdminPort = 15021
	}
	if v.Audience == "" {
		v.Audience = "agentauth"
	}
	if v.TokenExpirationSeconds == 0 {
		v.TokenExpirationSeconds = 3600
	}
}

// Validate reports each problem through add, with the field's path under prefix (e.g. "webhook.injection").
func (v *Values) Validate(prefix string, add func(field, format string, args ...any)) {
	f := func(name string) string { return prefix + "." + name }
	if v.Image == "" {
		add(f("image"), "required: the sidecar image")
	}
	switch v.ImagePullPolicy {
	case "Always", "IfNotPresent", "Never":
	default:
		add(f("imagePullPolicy"), "%q is not one of Always, IfNotPresent, Never", v.ImagePullPolicy)
	}
	if v.TrustDomain == "" {
		add(f("trustDomain"), "required")
	}
	if v.UID <= 0 || v.UID > 1<<31-1 {
		add(f("uid"), "%d is not a non-root uid", v.UID)
	}
	if !slices.Contains(modes, v.Mode) {
		add(f("mode"), "%q is not one of mtls, wpt, httpsig", v.Mode)
	}
	ports := []uint16{v.TransparentPort, v.IngressPort, v.AdminPort}
	if ports[0] == ports[1] || ports[0] == ports[2] || ports[1] == ports[2] {
		add(f("transparentPort"), "transparentPort, ingressPort and adminPort must differ")
	}
	for i, p := range v.ExcludeOutboundPorts {
		if p == 0 {
			add(fmt.Sprintf("%s[%d]", f("excludeOutboundPorts"), i), "0 is not a port")
		}
	}
	v.excludeCIDRs = nil
	for i, c := range v.ExcludeOutboundCIDRs {
		p, err := redirect.ParseCIDRs(c)
		if err != nil || len(p) != 1 {
			add(fmt.Sprintf("%s[%d]", f("excludeOutboundCIDRs"), i), "%q is not one CIDR: %v", c, err)
			continue
		}
		v.excludeCIDRs = append(v.excludeCIDRs, p[0])
	}
	for kind, m := range map[string]map[string]string{"requests": v.Resources.Requests, "limits": v.Resources.Limits} {
		for name, q := range m {
			if _, err := resource.ParseQuantity(q); err != nil {
				add(f("resources."+kind+"."+name), "%q is not a quantity: %v", q, err)
			}
		}
	}
	if v.TokenExpirationSeconds < 600 {
		add(f("tokenExpirationSeconds"), "%d is below the Kubernetes minimum of 600", v.TokenExpirationSeconds)
	}
	if s := v.SPIRE; s != nil {
		if s.SocketDir == "" {
			add(f("spire.socketDir"), "required")
		}
		if (s.CSIDriver == "") == (s.HostPath == "") {
			add(f("spire.csiDriver"), "set exactly one of csiDriver and hostPath")
		}
	}
}

var modes = []string{wire.ModeMTLS.String(), wire.ModeWPT.String(), wire.ModeHTTPSig.String()}
