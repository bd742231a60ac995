package inject

import (
	"errors"
	"testing"
)

// FuzzAnnotations: the annotations are the pod author's, so untrusted. Any value is either injected into a pod
// whose sidecar config loads, or refused with ErrRefused naming an annotation; never a panic, never a silent pass.
func FuzzAnnotations(f *testing.F) {
	f.Add("true", "wpt", routesWPT, "8080", "weather.tools.svc", "5432,6379", "10.0.0.0/8")
	f.Add("", "", "", "", "", "", "")
	f.Add("yes", "bearer", "{", "0", "a b", "x", "1.2.3.4")
	f.Add("true", "mtls", "- {name: a, host: a, upstream: 'https://a', serverID: 'spiffe://cluster.local/a'}", "15006", "t", "15001", "::/0")
	in := newTestInjector(f)
	f.Fuzz(func(t *testing.T, inject, mode, routes, port, host, exPorts, exCIDRs string) {
		ann := map[string]string{}
		for k, v := range map[string]string{AnnotationInject: inject, AnnotationMode: mode, AnnotationRoutes: routes,
			AnnotationInboundPort: port, AnnotationIngressHost: host, AnnotationExcludePorts: exPorts, AnnotationExcludeCIDRs: exCIDRs} {
			if v != "" {
				ann[k] = v
			}
		}
		out, err := in.Inject(testPod(ann), false)
		switch {
		case err != nil:
			var ae *AnnotationError
			if !errors.Is(err, ErrRefused) || !errors.As(err, &ae) {
				t.Fatalf("error %v is not a refusal naming an annotation", err)
			}
		case out == nil:
			if inject != "false" {
				t.Fatalf("pod with %v left alone without a refusal", ann)
			}
		default:
			if len(out.Spec.InitContainers) < 2 || out.Spec.InitContainers[1].Name != SidecarContainer {
				t.Fatalf("injected pod lacks the sidecar: %v", names(out.Spec.InitContainers))
			}
			if again, err := in.Inject(out, false); again != nil || err != nil {
				t.Fatalf("re-injection not a no-op: %v", err)
			}
		}
	})
}
