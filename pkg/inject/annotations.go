package inject

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/agentauth/agentauth/pkg/inject/redirect"
	"github.com/agentauth/agentauth/pkg/sidecar"
)

// The annotations a pod sets (and the label AnnotationInject, which webhooks can select on).
const (
	Prefix = "agentauth.io/"
	// AnnotationInject is "true" (inject) or "false" (never inject, also in an opted-in namespace).
	AnnotationInject = Prefix + "inject"
	// AnnotationMode is mtls, wpt or httpsig: the modes of routes that list none, and what the ingress role requires.
	AnnotationMode = Prefix + "mode"
	// AnnotationRoutes is a YAML (or JSON) list of egress routes, in the sidecar config's egress.routes format.
	AnnotationRoutes = Prefix + "routes"
	// AnnotationInboundPort is the tool's port: its inbound TCP goes to the sidecar's ingress listener, which
	// verifies callers and passes them to 127.0.0.1:<port> (the ingress role). One port: a sidecar has one ingress.
	AnnotationInboundPort = Prefix + "inbound-port"
	// AnnotationIngressHost is the name callers use for the tool (its policy's Tool::"<host>" and proof audience).
	AnnotationIngressHost = Prefix + "ingress-host"
	// AnnotationExcludePorts and AnnotationExcludeCIDRs are comma-separated outbound ports and CIDRs not redirected.
	AnnotationExcludePorts = Prefix + "exclude-outbound-ports"
	AnnotationExcludeCIDRs = Prefix + "exclude-outbound-cidrs"
	// AnnotationTrustBundle is set by the injector: the controller's CA certificate, which the sidecar reads
	// through the downward API to authenticate the controller before it has credentials.
	AnnotationTrustBundle = Prefix + "trust-bundle"
	// AnnotationStatus is set by the injector to "injected".
	AnnotationStatus = Prefix + "status"
)

// AnnotationError is a refusal at admission: the annotation and what is wrong with its value.
type AnnotationError struct {
	Annotation string
	Msg        string
}

func (e *AnnotationError) Error() string { return "annotation " + e.Annotation + ": " + e.Msg }

func annErr(key, format string, args ...any) *AnnotationError {
	return &AnnotationError{Annotation: key, Msg: fmt.Sprintf(format, args...)}
}

// options are a pod's parsed annotations.
type options struct {
	mode         string // "" when not set
	routes       []sidecar.RouteConfig
	hasRoutes    bool
	inboundPort  uint16
	ingressHost  string
	excludePorts []uint16
	excludeCIDRs []netip.Prefix
}

// known are the annotations under Prefix a pod may set; an unknown one is refused (a typo would otherwise be
// silently ignored, e.g. an exclusion that never applies).
var known = []string{AnnotationInject, AnnotationMode, AnnotationRoutes, AnnotationInboundPort, AnnotationIngressHost,
	AnnotationExcludePorts, AnnotationExcludeCIDRs, AnnotationTrustBundle, AnnotationStatus}

// injectValue reads agentauth.io/inject from annotations and labels: "true", "false" or absent ("").
func injectValue(annotations, labels map[string]string) (string, error) {
	var got string
	for _, src := range []struct {
		what string
		m    map[string]string
	}{{"annotation", annotations}, {"label", labels}} {
		v, ok := src.m[AnnotationInject]
		if !ok {
			continue
		}
		if v != "true" && v != "false" {
			return "", &AnnotationError{Annotation: AnnotationInject, Msg: fmt.Sprintf("%s value %q is not \"true\" or \"false\"", src.what, v)}
		}
		if got != "" && got != v {
			return "", annErr(AnnotationInject, "the annotation and the label disagree")
		}
		got = v
	}
	return got, nil
}

// parseOptions reads the pod's agentauth.io/* annotations; every malformed or unknown one is an *AnnotationError.
func parseOptions(ann map[string]string) (options, error) {
	var o options
	keys := make([]string, 0, len(ann))
	for k := range ann {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first problem reported is the same every time
	for _, k := range keys {
		if strings.HasPrefix(k, Prefix) && !slices.Contains(known, k) {
			return o, annErr(k, "unknown annotation (known: %s)", strings.Join(known[:7], ", "))
		}
	}
	if v, ok := ann[AnnotationMode]; ok {
		if !slices.Contains(modes, v) {
			return o, annErr(AnnotationMode, "%q is not one of mtls, wpt, httpsig", v)
		}
		o.mode = v
	}
	if v, ok := ann[AnnotationRoutes]; ok {
		routes, err := parseRoutes(v)
		if err != nil {
			return o, annErr(AnnotationRoutes, "%v", err)
		}
		o.routes, o.hasRoutes = routes, true
	}
	if v, ok := ann[AnnotationInboundPort]; ok {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
		if err != nil || n == 0 {
			return o, annErr(AnnotationInboundPort, "%q is not a port (1..65535)", v)
		}
		o.inboundPort = uint16(n)
	}
	if v, ok := ann[AnnotationIngressHost]; ok {
		if v == "" || strings.ContainsAny(v, "/?#@ \t\r\n") {
			return o, annErr(AnnotationIngressHost, "%q is not a host or host:port", v)
		}
		if o.inboundPort == 0 {
			return o, annErr(AnnotationIngressHost, "needs %s: the tool's port to protect", AnnotationInboundPort)
		}
		o.ingressHost = v
	} else if o.inboundPort != 0 {
		return o, annErr(AnnotationIngressHost, "required with %s: the name callers use for the tool, which its "+
			"policies and proof audience are written for", AnnotationInboundPort)
	}
	var err error
	if o.excludePorts, err = redirect.ParsePorts(ann[AnnotationExcludePorts]); err != nil {
		return o, annErr(AnnotationExcludePorts, "%v", err)
	}
	if o.excludeCIDRs, err = redirect.ParseCIDRs(ann[AnnotationExcludeCIDRs]); err != nil {
		return o, annErr(AnnotationExcludeCIDRs, "%v", err)
	}
	return o, nil
}

// parseRoutes decodes a YAML list of routes strictly: an unknown key is an error, as in the sidecar's config.
func parseRoutes(s string) ([]sidecar.RouteConfig, error) {
	dec := yaml.NewDecoder(bytes.NewReader([]byte(s)))
	dec.KnownFields(true)
	var routes []sidecar.RouteConfig
	if err := dec.Decode(&routes); err != nil {
		return nil, fmt.Errorf("not a YAML list of routes: %w", err)
	}
	if len(routes) == 0 {
		return nil, fmt.Errorf("no routes: leave the annotation out to use the injector's default routes")
	}
	var extra any
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("more than one YAML document")
	}
	return routes, nil
}
