// Package inject is the mutating admission webhook that adds the agentauth sidecar to pods that ask for it: the
// redirect init step (package redirect), the sidecar as a native sidecar, a projected service-account token and
// the sidecar's config, all rendered from one template (sidecar.yaml.tmpl) over the chart's values and the pod's
// agentauth.io/* annotations. Bad annotations are refused at admission, naming the annotation. Server serves it
// over HTTPS with a certificate from the controller's CA (rotated) and keeps the webhook configuration's caBundle
// current through the Kubernetes API.
package inject
