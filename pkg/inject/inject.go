package inject

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/template"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/agentauth/agentauth/pkg/inject/redirect"
	"github.com/agentauth/agentauth/pkg/sidecar"
)

//go:embed sidecar.yaml.tmpl
var sidecarTemplate string

// Names of what the injector adds; a pod that has the sidecar container already is not injected again.
const (
	RedirectContainer = "agentauth-redirect"
	SidecarContainer  = "agentauth-sidecar"
)

// ErrRefused is what every refusal at admission wraps; the message names the annotation (or value) at fault.
var ErrRefused = errors.New("injection refused")

// Injector renders the sidecar into pods. It is safe for concurrent use.
type Injector struct {
	values Values
	tmpl   *template.Template
	bundle func() []byte
}

// New checks v (SetDefaults, Validate, and a trial render) and returns an Injector. bundle returns the PEM of the
// CA certificates the sidecar trusts the controller by; it is called for every pod, so a new CA reaches new pods.
func New(v Values, bundle func() []byte) (*Injector, error) {
	v.SetDefaults()
	var problems []string
	v.Validate("injection", func(field, format string, args ...any) {
		problems = append(problems, field+": "+fmt.Sprintf(format, args...))
	})
	if len(problems) > 0 {
		return nil, fmt.Errorf("inject: %s", strings.Join(problems, "; "))
	}
	tmpl, err := template.New("sidecar.yaml.tmpl").Option("missingkey=error").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
	}).Parse(sidecarTemplate)
	if err != nil {
		return nil, fmt.Errorf("inject: template: %w", err)
	}
	in := &Injector{values: v, tmpl: tmpl, bundle: bundle}
	// A tool pod needs no routes, so this checks the values' identity and controller sections alone.
	trial := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "tool"}}}}
	trial.Annotations = map[string]string{AnnotationInboundPort: "8080", AnnotationIngressHost: "tool.example"}
	if _, err := in.Inject(trial, false); err != nil {
		return nil, fmt.Errorf("inject: the values do not make a valid sidecar: %w", err)
	}
	return in, nil
}

// Inject returns a mutated copy of pod with the sidecar, or nil when the pod is left alone: it opted out
// (agentauth.io/inject: "false"), has the sidecar already, or, with requireOptIn, did not ask with
// agentauth.io/inject: "true". A pod that asked and cannot be injected is an error wrapping ErrRefused whose
// message names the annotation: it is refused, never let run without the sidecar.
func (in *Injector) Inject(pod *corev1.Pod, requireOptIn bool) (*corev1.Pod, error) {
	ask, err := injectValue(pod.Annotations, pod.Labels)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if ask == "false" || (requireOptIn && ask != "true") || injected(pod) {
		return nil, nil
	}
	if pod.Spec.HostNetwork {
		return nil, fmt.Errorf("%w: %w", ErrRefused, annErr(AnnotationInject,
			"a hostNetwork pod cannot be injected: its redirect rules would be the node's"))
	}
	o, err := parseOptions(pod.Annotations)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if err := in.checkUIDs(pod); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	cfg, err := in.config(o)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	add, err := in.render(o, cfg)
	if err != nil {
		return nil, err
	}
	out := pod.DeepCopy()
	for _, v := range add.Volumes {
		if slices.ContainsFunc(out.Spec.Volumes, func(x corev1.Volume) bool { return x.Name == v.Name }) {
			return nil, fmt.Errorf("%w: the pod already has a volume named %q, which the sidecar needs", ErrRefused, v.Name)
		}
	}
	for _, c := range add.InitContainers {
		if slices.ContainsFunc(out.Spec.Containers, func(x corev1.Container) bool { return x.Name == c.Name }) ||
			slices.ContainsFunc(out.Spec.InitContainers, func(x corev1.Container) bool { return x.Name == c.Name }) {
			return nil, fmt.Errorf("%w: the pod already has a container named %q", ErrRefused, c.Name)
		}
	}
	out.Spec.InitContainers = append(add.InitContainers, out.Spec.InitContainers...)
	out.Spec.Volumes = append(out.Spec.Volumes, add.Volumes...)
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationTrustBundle] = string(in.bundle())
	out.Annotations[AnnotationStatus] = "injected"
	return out, nil
}

func injected(pod *corev1.Pod) bool {
	return slices.ContainsFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == SidecarContainer })
}

// checkUIDs refuses a pod whose containers run as the sidecar's uid: the redirect rules leave that uid's traffic
// alone, so such a container would reach the network around the sidecar.
func (in *Injector) checkUIDs(pod *corev1.Pod) error {
	uid := in.values.UID
	if sc := pod.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == uid {
		return annErr(AnnotationInject, "the pod runs as uid %d, the sidecar's: its traffic would bypass the sidecar", uid)
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil && *c.SecurityContext.RunAsUser == uid {
				return annErr(AnnotationInject, "container %q runs as uid %d, the sidecar's: its traffic would bypass the sidecar", c.Name, uid)
			}
		}
	}
	return nil
}

// config builds the pod's sidecar config and checks it as the sidecar will at start (sidecar.Parse: defaults,
// then Validate). It returns the YAML.
func (in *Injector) config(o options) (string, error) {
	v := in.values
	mode := v.Mode
	if o.mode != "" {
		mode = o.mode
	}
	cfg := sidecar.Config{
		Identity:   v.Identity,
		Controller: v.Controller,
		Admin:      sidecar.AdminConfig{Listen: ":" + strconv.Itoa(int(v.AdminPort))},
	}
	routes, routesFrom := v.Routes, "webhook.injection.routes"
	if o.hasRoutes {
		routes, routesFrom = o.routes, AnnotationRoutes
	}
	if len(routes) > 0 {
		routes = slices.Clone(routes)
		for i := range routes {
			if len(routes[i].Modes) == 0 {
				routes[i].Modes = []string{mode}
			}
		}
		cfg.Egress = &sidecar.EgressConfig{
			TransparentListen: net.JoinHostPort("127.0.0.1", strconv.Itoa(int(v.TransparentPort))),
			Routes:            routes,
		}
	}
	if o.inboundPort != 0 {
		cfg.Ingress = &sidecar.IngressConfig{
			Listen:  ":" + strconv.Itoa(int(v.IngressPort)),
			Backend: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(int(o.inboundPort))),
			Require: []string{mode},
			MTLS:    &sidecar.IngressMTLSConfig{TrustDomains: []string{v.TrustDomain}},
			Host:    o.ingressHost,
		}
	}
	if cfg.Egress == nil && cfg.Ingress == nil {
		return "", annErr(AnnotationRoutes, "the pod asked for the sidecar but has no routes (annotation %s, or the "+
			"injector's default routes) and no inbound port (%s): the sidecar would have nothing to do", AnnotationRoutes, AnnotationInboundPort)
	}
	out, err := cfg.Marshal()
	if err != nil {
		return "", fmt.Errorf("rendering the sidecar config: %w", err)
	}
	if _, err := sidecar.Parse(out); err != nil {
		return "", blame(err, routesFrom)
	}
	return string(out), nil
}

// blame turns the sidecar config's validation errors into a message that names where each value came from.
func blame(err error, routesFrom string) error {
	var ve *sidecar.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("the rendered sidecar config: %w", err)
	}
	var first *AnnotationError
	msgs := make([]string, 0, len(ve.Errors))
	for _, fe := range ve.Errors {
		src := "webhook.injection"
		switch {
		case strings.HasPrefix(fe.Field, "egress.routes"):
			src = routesFrom
		case fe.Field == "ingress.host":
			src = AnnotationIngressHost
		case strings.HasPrefix(fe.Field, "ingress"):
			src = AnnotationInboundPort
		}
		if strings.HasPrefix(src, Prefix) {
			src = "annotation " + src
		}
		msgs = append(msgs, fmt.Sprintf("%s: sidecar config %s: %s", src, fe.Field, fe.Msg))
		if first == nil && strings.HasPrefix(src, "annotation ") {
			first = &AnnotationError{Annotation: strings.TrimPrefix(src, "annotation ")}
		}
	}
	if first == nil {
		return errors.New(strings.Join(msgs, "; "))
	}
	// The message as a whole: every problem, each naming its source.
	return &blameError{AnnotationError: first, msg: strings.Join(msgs, "; ")}
}

type blameError struct {
	*AnnotationError
	msg string
}

func (e *blameError) Error() string { return e.msg }
func (e *blameError) Unwrap() error { return e.AnnotationError }

// addition is what the template renders.
type addition struct {
	InitContainers []corev1.Container `json:"initContainers"`
	Volumes        []corev1.Volume    `json:"volumes"`
}

func (in *Injector) render(o options, config string) (*addition, error) {
	v := &in.values
	rules := redirect.Rules{
		SidecarUID:           uint32(v.UID),
		OutboundPort:         v.TransparentPort,
		ExcludeOutboundPorts: mergePorts(v.ExcludeOutboundPorts, o.excludePorts),
		ExcludeOutboundCIDRs: slices.Concat(v.excludeCIDRs, o.excludeCIDRs),
	}
	if o.inboundPort != 0 {
		rules.InboundPorts, rules.InboundPort = []uint16{o.inboundPort}, v.IngressPort
	}
	if err := rules.Validate(); err != nil {
		// The only conflicts left are with the sidecar's own ports, through one of these two annotations.
		ann := AnnotationExcludePorts
		if strings.HasPrefix(err.Error(), "-inbound") {
			ann = AnnotationInboundPort
		}
		return nil, fmt.Errorf("%w: %w", ErrRefused, annErr(ann, "%v", err))
	}
	data := map[string]any{
		"Values":          v,
		"RedirectArgs":    append([]string{"redirect", "install"}, rules.Args()...),
		"Config":          config,
		"Ingress":         o.inboundPort != 0,
		"IdentityDir":     IdentityDir,
		"StateDir":        StateDir,
		"BundleFieldPath": "metadata.annotations['" + AnnotationTrustBundle + "']",
	}
	var buf bytes.Buffer
	if err := in.tmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("inject: rendering the template: %w", err)
	}
	var add addition
	if err := yaml.UnmarshalStrict(buf.Bytes(), &add); err != nil {
		return nil, fmt.Errorf("inject: the rendered template is not valid: %w\n%s", err, buf.Bytes())
	}
	return &add, nil
}

// mergePorts is a then the ports of b not in a.
func mergePorts(a, b []uint16) []uint16 {
	out := slices.Clone(a)
	for _, p := range b {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}
