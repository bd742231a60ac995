package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/pkg/audit"
	"github.com/agentauth/agentauth/pkg/crd"
	"github.com/agentauth/agentauth/pkg/policy"
)

// Policy sources (policy.source).
const (
	PolicySourceAdmin = "admin"
	PolicySourceCRD   = "crd"
)

// PolicyConfig says where the live policy set comes from.
type PolicyConfig struct {
	// Source is "admin" (the default: agentauthctl policy apply, through the admin API, replaces the set) or "crd":
	// the set is every CedarPolicy object of the cluster together (the chart's CRD), and the admin API's policy
	// apply is refused.
	Source string `yaml:"source,omitempty"`
	// Kubeconfig, with source crd, is a kubeconfig file; empty means the pod's in-cluster service account.
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
}

func (p *PolicyConfig) validate(pr *confyaml.Problems) {
	switch p.Source {
	case "", PolicySourceAdmin:
		if p.Kubeconfig != "" {
			pr.Add("policy.kubeconfig", "only with source %s", PolicySourceCRD)
		}
	case PolicySourceCRD:
	default:
		pr.Add("policy.source", "%q is not %s or %s", p.Source, PolicySourceAdmin, PolicySourceCRD)
	}
}

// fromCRD reports whether the live policy set is the CedarPolicy objects.
func (p *PolicyConfig) fromCRD() bool { return p.Source == PolicySourceCRD }

// errPolicyFromCRD refuses the admin API's policy apply when CedarPolicy objects are the set.
var errPolicyFromCRD = errors.New("policy.source is crd: the live policy set is every CedarPolicy object of the " +
	"cluster; change it with kubectl apply -f of a CedarPolicy (apiVersion agentauth.io/v1alpha1) instead")

// Reasons of a CedarPolicy's Accepted condition.
const (
	reasonCompiled   = "Compiled"   // True: its policies are in the live set
	reasonInvalid    = "Invalid"    // False: it does not compile, alone or with the others (a duplicate @id)
	reasonNotApplied = "NotApplied" // False: it compiles, but the set does not (another object is Invalid), or storing failed
)

// policySource names a CedarPolicy as a policy file: what compile errors, decisions and audit records show.
func policySource(name string) string { return "CedarPolicy/" + name }

// cedarPolicies follows every CedarPolicy (policy.source crd) on every replica: the admission webhook checks a new
// object against the others with it, and policyApplier (on the leader) makes them the live set.
type cedarPolicies struct {
	c      *Controller
	client dynamic.Interface
	halt   func()

	mu      sync.Mutex
	snap    *policySnapshot // nil until the first complete list
	changed chan struct{}   // closed when snap is replaced
}

// policySnapshot is every CedarPolicy at one moment, with the policy ids of each that compiles alone.
type policySnapshot struct {
	objs []crd.CedarPolicy
	ids  map[string]policyOwner
}

// policyOwner is where a policy id is: the object and the line of the policy.
type policyOwner struct {
	name string
	line int
}

func (p *cedarPolicies) provision(context.Context) error {
	cfg, err := kubeRESTConfig(p.c.cfg.Policy.Kubeconfig)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if p.client, err = dynamic.NewForConfig(cfg); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	p.changed = make(chan struct{})
	p.c.policies = p
	return nil
}

func (p *cedarPolicies) start(_ context.Context, fail func(error)) error {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := crd.Watch(ctx, p.client, crd.CedarPolicies, p.c.log.Named("cedarpolicies"), p.update); err != nil && ctx.Err() == nil {
			fail(fmt.Errorf("policy: %w", err))
		}
	})
	p.halt = func() {
		cancel()
		wg.Wait()
	}
	return nil
}

func (p *cedarPolicies) stop(context.Context) { p.halt() }

// update replaces the snapshot (crd.Watch's callback).
func (p *cedarPolicies) update(objs []crd.CedarPolicy) {
	s := &policySnapshot{objs: objs, ids: map[string]policyOwner{}}
	for _, o := range objs {
		set, err := policy.Compile(map[string][]byte{policySource(o.Name): []byte(o.Spec.Cedar)})
		if err != nil {
			continue
		}
		for _, info := range set.Policies() {
			s.ids[info.ID] = policyOwner{name: o.Name, line: info.Line}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.snap = s
	close(p.changed)
	p.changed = make(chan struct{})
}

// current is the latest snapshot (nil before the first list) and a channel closed when it is replaced.
func (p *cedarPolicies) current() (*policySnapshot, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap, p.changed
}

// notReady holds /readyz until the first complete list: until then the live set is whatever the state held.
func (p *cedarPolicies) notReady() error {
	if snap, _ := p.current(); snap == nil {
		return errors.New("CedarPolicy objects not listed yet (policy.source crd): is the CRD installed, and may the controller list cedarpolicies?")
	}
	return nil
}

// admit is the admission check of a CedarPolicy being created or updated: it must compile alone, and none of its
// policy ids may be used by another CedarPolicy (ids are unique across the set). The error names the object and
// the line and column of each problem; kubectl shows it.
func (p *cedarPolicies) admit(_ context.Context, obj *crd.CedarPolicy) error {
	set, err := policy.Compile(map[string][]byte{policySource(obj.Name): []byte(obj.Spec.Cedar)})
	if err != nil {
		return fmt.Errorf("CedarPolicy %q does not compile:\n%s", obj.Name, describeCompileError(err))
	}
	snap, _ := p.current()
	if snap == nil {
		return nil // not listed yet: the controller reports a clash in the object's status instead
	}
	var clashes []string
	for _, info := range set.Policies() {
		if o, ok := snap.ids[info.ID]; ok && o.name != obj.Name {
			clashes = append(clashes, fmt.Sprintf("line %d, column %d: policy id %q is already used by CedarPolicy %q (line %d)",
				info.Line, info.Column, info.ID, o.name, o.line))
		}
	}
	if len(clashes) > 0 {
		return fmt.Errorf("CedarPolicy %q clashes with the policy set:\n%s", obj.Name, strings.Join(clashes, "\n"))
	}
	return nil
}

// describeCompileError is the problems of one policy file, one a line, each with its line and column.
func describeCompileError(err error) string {
	var ces policy.CompileErrors
	if !errors.As(err, &ces) {
		return err.Error()
	}
	lines := make([]string, len(ces))
	for i, e := range ces {
		lines[i] = describeProblem(e)
	}
	return strings.Join(lines, "\n")
}

func describeProblem(e *policy.CompileError) string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d, column %d: ", e.Line, e.Column)
	}
	if e.PolicyID != "" {
		fmt.Fprintf(&b, "policy %q: ", e.PolicyID)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// policyApplier makes the CedarPolicy objects the live policy set, and reports on each whether it is in it. It
// runs on the leader only (leaderOnly): one replica writes the state and the statuses.
//
// A set that does not compile is not applied: the sidecars keep the last good set, the object at fault gets
// Accepted=False (Invalid), and each changed object waiting for the set to compile gets NotApplied. An object
// that slipped past admission (webhook down, or created before it) cannot open or close a hole in the set.
type policyApplier struct {
	c    *Controller
	halt func()
}

func (a *policyApplier) provision(context.Context) error { return nil }

func (a *policyApplier) start(_ context.Context, _ func(error)) error {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			snap, changed := a.c.policies.current()
			if snap != nil {
				a.apply(ctx, snap.objs)
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
	})
	a.halt = func() {
		cancel()
		wg.Wait()
	}
	return nil
}

func (a *policyApplier) stop(context.Context) { a.halt() }

// apply compiles every object together, stores the set when it compiles and differs from the stored one, and
// writes each object's Accepted condition.
func (a *policyApplier) apply(ctx context.Context, objs []crd.CedarPolicy) {
	log := a.c.log.Named("cedarpolicies")
	files := make(map[string][]byte, len(objs))
	docs := make([]*agentauthv1.Policy, 0, len(objs))
	for _, o := range objs {
		files[policySource(o.Name)] = []byte(o.Spec.Cedar)
		docs = append(docs, &agentauthv1.Policy{Id: o.Name, Cedar: o.Spec.Cedar, Source: policySource(o.Name)})
	}
	problems := map[string][]string{} // by source
	var setErr string                 // why the set is not live, for the objects that are not at fault
	set, err := policy.Compile(files)
	var ces policy.CompileErrors
	switch {
	case errors.As(err, &ces):
		var at []string
		for _, e := range ces {
			if len(problems[e.File]) == 0 {
				at = append(at, strings.TrimPrefix(e.File, "CedarPolicy/"))
			}
			problems[e.File] = append(problems[e.File], describeProblem(e))
		}
		setErr = fmt.Sprintf("not in the live policy set: the set does not compile (CedarPolicy %s Invalid); "+
			"the sidecars keep the last good set", strings.Join(at, ", "))
		log.Error("CedarPolicy objects not applied: the set does not compile; serving the last good set", zap.Error(err))
	case err != nil:
		setErr = "not in the live policy set: " + err.Error()
		log.Error("CedarPolicy objects not applied", zap.Error(err))
	default:
		if err := a.store(ctx, docs, set); err != nil {
			setErr = "not in the live policy set: " + err.Error()
			log.Error("CedarPolicy objects not applied: storing the set failed", zap.Error(err))
		}
	}
	live := a.live()
	w := crd.StatusWriter{Client: a.c.policies.client, Resource: crd.CedarPolicies}
	for _, o := range objs {
		accepted, reason, msg := true, reasonCompiled, "its policies are in the live policy set"
		switch src := policySource(o.Name); {
		case len(problems[src]) > 0:
			accepted, reason, msg = false, reasonInvalid, strings.Join(problems[src], "\n")
		case setErr != "" && live[o.Name] != o.Spec.Cedar:
			accepted, reason, msg = false, reasonNotApplied, setErr
		}
		if err := w.SetAccepted(ctx, o.ObjectMeta, o.Status, accepted, reason, msg); err != nil && ctx.Err() == nil {
			log.Error("CedarPolicy status not written", zap.String("name", o.Name), zap.Error(err))
		}
	}
}

// store makes docs the stored policy set unless it already is; sidecars get it over xDS.
func (a *policyApplier) store(ctx context.Context, docs []*agentauthv1.Policy, set *policy.Set) error {
	live := a.live()
	same := len(live) == len(docs)
	for _, d := range docs {
		same = same && live[d.GetId()] == d.GetCedar()
	}
	if same {
		return nil
	}
	if err := a.c.state.SetPolicies(docs); err != nil {
		return err
	}
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.GetId()
	}
	a.c.actions.record(ctx, &audit.Record{Action: ActionPolicyApply, Actor: "kubernetes:cedarpolicies", PolicyIDs: ids,
		Reason: fmt.Sprintf("policy set version %s", set.Version())})
	a.c.log.Info("CedarPolicy objects applied", zap.Int("objects", len(docs)), zap.Int("policies", set.Len()),
		zap.String("version", set.Version()))
	return nil
}

// live is the stored policy set: object name → Cedar text.
func (a *policyApplier) live() map[string]string {
	ps, err := a.c.store.Policies().List()
	if err != nil {
		a.c.log.Error("reading the stored policies", zap.Error(err))
		return nil
	}
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		m[p.GetId()] = p.GetCedar()
	}
	return m
}

var (
	_ component = (*cedarPolicies)(nil)
	_ component = (*policyApplier)(nil)
)
