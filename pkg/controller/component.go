package controller

import (
	"context"
	"fmt"
	"net"

	"go.uber.org/zap"

	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/internal/netlimit"
)

// component is one part of the controller with the one lifecycle every part has, as Caddy's modules do:
//
//   - validate, when the component has it (validator), checks its section of the config. Config.Validate calls
//     it, at Load and before New, so `controller -check` reports its problems, each with its field and line.
//   - provision builds it and binds its listeners (New, in list order). Nothing is served yet. What it opens it
//     registers with Controller.onClose, so a New that fails later, and Run when it returns, release it.
//   - start begins serving in the background (Run, in list order). A server that stops on its own reports its
//     error to fail, which stops the controller.
//   - stop stops serving, gracefully until ctx (the shutdown deadline) ends (Run, in reverse list order). When it
//     returns, nothing of the component runs any more.
//
// The controller's shared state (store, CA, own SVID, publisher, metrics registry) is built by New before any
// component and is on the Controller for every component to use.
//
// Adding a component (an admission webhook, an attestor, leader election, an audit witness): write a type with
// these methods in a file of its own, and append it in Controller.newComponents where it belongs in the start
// order (on the condition of its config section, if it has one).
type component interface {
	provision(ctx context.Context) error
	start(ctx context.Context, fail func(error)) error
	stop(ctx context.Context)
}

// validator is a component with a config section to check; it adds each problem to p. The Controller it is
// built on has only cfg and td (zero when trustDomain is invalid) when Config.Validate calls it.
type validator interface {
	validate(p *confyaml.Problems)
}

// readiness is a component that can hold /readyz at 503: notReady says why, or is nil once the component is
// ready (a watch that has not completed its first list, say).
type readiness interface {
	notReady() error
}

// serving is a component that names its endpoints in the "controller serving" log line.
type serving interface {
	logFields() []zap.Field
}

// newComponents lists the controller's components in start order; Run stops them in reverse. The ops listener
// comes first, so it is last to stop: whoever polls /readyz (503 while starting and stopping) sees the controller
// come and go. The CedarPolicy watch starts before the webhook that checks new objects against it. Housekeeping runs from before the first server until after the last. Singleton work is wrapped
// in leaderOnly; with state.backend kubernetes, leaderElection comes last, after all of it, and stops first.
func (c *Controller) newComponents() []component {
	comps := []component{&leaderOnly{c: c, work: "housekeeping", inner: &housekeeper{c: c}},
		&leaderOnly{c: c, work: "ca_rotation", inner: &caRotator{c: c}}, &opsServer{c: c},
		&issuerServer{c: c}, &xdsServer{c: c}, &auditWitness{c: c}}
	if c.cfg.TokenService != nil {
		comps = append(comps, &tokenServer{c: c})
	}
	if c.cfg.SSF != nil {
		ssf := &ssfServer{c: c}
		comps = append(comps, ssf)
		if c.cfg.SSF.TransmitterObjects != nil {
			ssf.objects = &ssfObjects{s: ssf}
			comps = append(comps, ssf.objects)
		}
		comps = append(comps, &leaderOnly{c: c, work: "ssf_clients", inner: &ssfClients{s: ssf}})
	}
	if c.cfg.Policy.fromCRD() {
		comps = append(comps, &cedarPolicies{c: c}, &leaderOnly{c: c, work: "cedar_policies", inner: &policyApplier{c: c}})
	}
	if c.cfg.Webhook != nil {
		comps = append(comps, &webhookServer{c: c})
	}
	comps = append(comps, &adminServer{c: c})
	if c.cfg.State.Backend == BackendKubernetes {
		comps = append(comps, &caWatcher{c: c}, &leaderElection{c: c})
	}
	return comps
}

// provision provisions every component, in order.
func (c *Controller) provision(ctx context.Context) error {
	c.components = c.newComponents()
	for _, comp := range c.components {
		if err := comp.provision(ctx); err != nil {
			return err
		}
	}
	return nil
}

// onClose registers fn to run when the controller closes (New failed, or Run returned), in reverse order.
func (c *Controller) onClose(fn func()) { c.closers = append(c.closers, fn) }

// listen binds a TCP listener for config field field, closed with the controller. Every listener has its own
// connection caps (netlimit), so a flood on one leaves the descriptors and memory the others need: the admin
// socket, /readyz, SSF push and Renew keep answering.
func (c *Controller) listen(field, addr string, l netlimit.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	c.onClose(func() { _ = ln.Close() })
	return l.Listener(ln), nil
}
