package controller

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/pkg/crd"
	"github.com/agentauth/agentauth/pkg/signals"
	"github.com/agentauth/agentauth/pkg/store/kubestore"
)

// Reasons of an SSFTransmitter's Accepted condition.
const (
	// reasonConfigured: the transmitter is trusted (Accepted=True).
	reasonConfigured = "Configured"
	// reasonIssuerConflict: another source trusts the issuer already: the controller's ssf.transmitters, which
	// always wins, or an older SSFTransmitter (by creation, then name).
	reasonIssuerConflict = "IssuerConflict"
	// reasonSecretNotFound: a Secret, or its key, the object refers to is missing.
	reasonSecretNotFound = "SecretNotFound"
	// reasonInvalidJWKS: the JWK Set in jwksSecretRef is not a usable one.
	reasonInvalidJWKS = "InvalidJWKS"
	// reasonInvalidField: a field is wrong (the message names it).
	reasonInvalidField = "Invalid"
)

// objectError is why an SSFTransmitter is not accepted: the reason of its Accepted=False condition and err, its
// message.
type objectError struct {
	reason string
	err    error
}

func (e *objectError) Error() string { return e.err.Error() }

func refuseObject(reason, format string, args ...any) *objectError {
	return &objectError{reason: reason, err: fmt.Errorf(format, args...)}
}

// secretFunc returns the value of key in the Secret name of the controller's namespace; field is the object's
// field that refers to it, for the message.
type secretFunc func(field, name, key string) ([]byte, error)

// transmitterFromObject converts an SSFTransmitter into the transmitter of the controller's config it stands for,
// its Secrets read through secret (pushAuthorization, poll and stream authorization as values, the JWK Set
// inline), and checks it as ssf.transmitters entries are checked. The error is an *objectError.
func transmitterFromObject(o *crd.SSFTransmitter, secret secretFunc) (TransmitterConfig, error) {
	sp := o.Spec
	t := TransmitterConfig{Issuer: sp.Issuer, Audience: sp.Audience, JWKSURL: sp.JWKSURL}
	str := func(field string, ref *crd.SecretKeyRef) (string, error) {
		if ref == nil {
			return "", nil
		}
		b, err := secret(field, ref.Name, ref.Key)
		// A Secret written from a file often ends in a newline, as the config's *File secrets do.
		return strings.TrimRight(string(b), "\r\n"), err
	}
	var err error
	if ref := sp.JWKSSecretRef; ref != nil {
		if t.jwks, err = secret("spec.jwksSecretRef", ref.Name, ref.Key); err != nil {
			return t, err
		}
		t.jwksSource = fmt.Sprintf("Secret %s key %s", ref.Name, ref.Key)
	}
	if t.PushAuthorization, err = str("spec.pushAuthorizationSecretRef", sp.PushAuthorizationSecretRef); err != nil {
		return t, err
	}
	if p := sp.Poll; p != nil {
		t.Poll = &SSFPollConfig{URL: p.URL, MaxEvents: p.MaxEvents}
		if p.Interval != "" {
			if t.Poll.Interval, err = time.ParseDuration(p.Interval); err != nil {
				return t, refuseObject(reasonInvalidField, "spec.poll.interval: %v", err)
			}
		}
		if t.Poll.Authorization, err = str("spec.poll.authorizationSecretRef", p.AuthorizationSecretRef); err != nil {
			return t, err
		}
	}
	if st := sp.Stream; st != nil {
		t.Stream = &SSFStreamConfig{Delivery: st.Delivery, PushEndpoint: st.PushEndpoint, EventsRequested: st.EventsRequested}
		if t.Stream.Authorization, err = str("spec.stream.authorizationSecretRef", st.AuthorizationSecretRef); err != nil {
			return t, err
		}
	}
	var p confyaml.Problems
	t.validate(&p, "spec")
	if t.Poll != nil && t.Poll.URL != "" {
		if err := signals.CheckEndpointURL(t.Poll.URL); err != nil {
			p.Add("spec.poll.url", "%v", err)
		}
	}
	if err := p.Err("SSFTransmitter " + o.Name); err != nil {
		return t, &objectError{reason: reasonInvalidField, err: err}
	}
	return t, nil
}

// ssfObjects trusts, besides ssf.transmitters, the transmitter of every SSFTransmitter object (ssf.transmitterObjects),
// on every replica: it follows the objects and the Secrets of the controller's namespace they refer to, swaps the
// receiver's transmitter set whenever either changes (signals.Receiver.SetTransmitters), and reports on each
// object whether it is trusted (its Accepted condition). The poll and stream clients of the objects' transmitters
// are singleton work: clients runs them while ssfClients runs.
type ssfObjects struct {
	s       *ssfServer
	log     *zap.Logger
	kube    kubernetes.Interface
	dyn     dynamic.Interface
	status  crd.StatusWriter
	clients *objectClients

	mu   sync.Mutex
	objs []crd.SSFTransmitter // nil until the first list
	refs map[string]bool      // the Secrets the objects refer to
	// issuers are the objects' transmitters trusted now (apply's, serially), sorted.
	issuers []string
	kick    chan struct{}
	halt    func() // set by start
	secret  corelisters.SecretNamespaceLister
	// secretFn reads the objects' Secrets: secretValue, from the informer's cache (tests replace it).
	secretFn secretFunc
}

func (o *ssfObjects) provision(context.Context) error {
	cfg := o.s.c.cfg.SSF.TransmitterObjects
	rc, err := kubeRESTConfig(cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("ssf.transmitterObjects: %w", err)
	}
	if o.kube, err = kubernetes.NewForConfig(rc); err != nil {
		return fmt.Errorf("ssf.transmitterObjects: %w", err)
	}
	if o.dyn, err = dynamic.NewForConfig(rc); err != nil {
		return fmt.Errorf("ssf.transmitterObjects: %w", err)
	}
	o.log = o.s.c.log.Named("ssf")
	o.status = crd.StatusWriter{Client: o.dyn, Resource: crd.SSFTransmitters}
	o.clients = &objectClients{s: o.s, want: map[string]TransmitterConfig{}, runs: map[string]*clientRun{}}
	o.kick = make(chan struct{}, 1)
	o.secretFn = o.secretValue
	return nil
}

func (o *ssfObjects) start(context.Context, func(error)) error {
	ctx, cancel := context.WithCancel(context.Background())
	// The state backend's own records are Secrets of this namespace too, many of them; they are not transmitter
	// secrets.
	notStore := "!" + kubestore.LabelStore + ",!" + kubestore.LabelSETs + ",!" + kubestore.LabelDirect
	factory := informers.NewSharedInformerFactoryWithOptions(o.kube, 0,
		informers.WithNamespace(o.s.c.cfg.SSF.TransmitterObjects.Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = notStore }))
	secrets := factory.Core().V1().Secrets()
	o.secret = secrets.Lister().Secrets(o.s.c.cfg.SSF.TransmitterObjects.Namespace)
	onSecret := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if m, ok := obj.(metav1.Object); ok {
			o.mu.Lock()
			ref := o.refs[m.GetName()]
			o.mu.Unlock()
			if ref {
				o.notify()
			}
		}
	}
	if _, err := secrets.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onSecret,
		UpdateFunc: func(_, obj any) { onSecret(obj) }, DeleteFunc: onSecret}); err != nil {
		cancel()
		return fmt.Errorf("ssf.transmitterObjects: %w", err)
	}
	factory.Start(ctx.Done())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := crd.Watch(ctx, o.dyn, crd.SSFTransmitters, o.log, func(objs []crd.SSFTransmitter) {
			o.mu.Lock()
			o.objs = objs
			o.mu.Unlock()
			o.notify()
		}); err != nil && ctx.Err() == nil {
			o.log.Error("SSFTransmitter objects not read", zap.Error(err))
		}
	})
	wg.Go(func() {
		if !cache.WaitForCacheSync(ctx.Done(), secrets.Informer().HasSynced) {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-o.kick:
				o.reconcile(ctx)
			}
		}
	})
	o.halt = func() {
		cancel()
		wg.Wait()
		factory.Shutdown()
	}
	return nil
}

func (o *ssfObjects) stop(context.Context) { o.halt() }

func (o *ssfObjects) notify() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// secretValue reads key of the Secret name from the informer's cache.
func (o *ssfObjects) secretValue(field, name, key string) ([]byte, error) {
	sec, err := o.secret.Get(name)
	switch {
	case apierrors.IsNotFound(err):
		return nil, refuseObject(reasonSecretNotFound, "%s: Secret %s/%s not found", field,
			o.s.c.cfg.SSF.TransmitterObjects.Namespace, name)
	case err != nil:
		return nil, refuseObject(reasonSecretNotFound, "%s: Secret %s: %v", field, name, err)
	}
	v, ok := sec.Data[key]
	if !ok || len(v) == 0 {
		return nil, refuseObject(reasonSecretNotFound, "%s: Secret %s/%s has no key %q", field, sec.Namespace, name, key)
	}
	return v, nil
}

// verdict is what reconcile made of one object.
type verdict struct {
	obj *crd.SSFTransmitter
	err *objectError // nil: accepted
}

// notReady holds /readyz until the first complete list: until then the objects' transmitters are not trusted.
func (o *ssfObjects) notReady() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.objs == nil {
		return errors.New("SSFTransmitter objects not listed yet (ssf.transmitterObjects): is the CRD installed, and may the controller list ssftransmitters?")
	}
	return nil
}

// reconcile decides which objects' transmitters are trusted, swaps the receiver's set to ssf.transmitters and
// theirs, hands their clients over, and writes every object's Accepted condition.
func (o *ssfObjects) reconcile(ctx context.Context) {
	o.mu.Lock()
	objs := o.objs
	o.mu.Unlock()
	if objs == nil {
		return // not listed yet
	}
	for _, v := range o.apply(objs) {
		reason, msg := reasonConfigured, "the controller trusts SETs from "+v.obj.Spec.Issuer
		if v.err != nil {
			reason, msg = v.err.reason, v.err.Error()
			o.log.Warn("SSFTransmitter not accepted", zap.String("name", v.obj.Name), zap.String("reason", reason),
				zap.String("why", msg))
		}
		if err := o.status.SetAccepted(ctx, v.obj.ObjectMeta, v.obj.Status, v.err == nil, reason, msg); err != nil {
			o.log.Warn("SSFTransmitter status not written", zap.String("name", v.obj.Name), zap.Error(err))
		}
	}
}

// apply judges objs, makes the receiver trust ssf.transmitters and the accepted objects' transmitters, hands
// their clients over, and returns the verdicts.
func (o *ssfObjects) apply(objs []crd.SSFTransmitter) []verdict {
	verdicts, accepted, refs := o.judge(objs)
	o.mu.Lock()
	o.refs = refs
	o.mu.Unlock()
	trusted := make([]signals.TransmitterConfig, 0, len(o.s.c.cfg.SSF.Transmitters)+len(accepted))
	for _, t := range o.s.c.cfg.SSF.Transmitters {
		trusted = append(trusted, t.receiverConfig())
	}
	issuers := make([]string, 0, len(accepted))
	for _, t := range accepted {
		trusted = append(trusted, t.receiverConfig())
		issuers = append(issuers, t.Issuer)
	}
	if err := o.s.rcv.SetTransmitters(trusted); err != nil {
		// judge checked each one; this is a bug, and the set in force stays.
		o.log.Error("SSF transmitters of SSFTransmitter objects not applied", zap.Error(err))
		for i := range verdicts {
			verdicts[i].err = &objectError{reason: reasonInvalidField, err: err}
		}
		return verdicts
	}
	slices.Sort(issuers)
	if !slices.Equal(issuers, o.issuers) {
		o.log.Info("SSF transmitters of SSFTransmitter objects trusted", zap.Strings("issuers", issuers))
		o.issuers = issuers
	}
	o.clients.set(accepted)
	return verdicts
}

// judge converts and checks each object, oldest first, and returns a verdict per object, the accepted
// transmitters by issuer, and the names of the Secrets the objects refer to.
func (o *ssfObjects) judge(objs []crd.SSFTransmitter) ([]verdict, map[string]TransmitterConfig, map[string]bool) {
	objs = slices.Clone(objs)
	slices.SortStableFunc(objs, func(a, b crd.SSFTransmitter) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	fromConfig := map[string]bool{}
	for _, t := range o.s.c.cfg.SSF.Transmitters {
		fromConfig[t.Issuer] = true
	}
	accepted, owner, refs := map[string]TransmitterConfig{}, map[string]string{}, map[string]bool{}
	verdicts := make([]verdict, len(objs))
	for i := range objs {
		obj := &objs[i]
		for _, ref := range secretRefs(obj) {
			refs[ref.Name] = true
		}
		t, err := o.judgeOne(obj, fromConfig, owner)
		verdicts[i] = verdict{obj: obj, err: err}
		if err == nil {
			accepted[t.Issuer], owner[t.Issuer] = t, obj.Name
		}
	}
	return verdicts, accepted, refs
}

// judgeOne converts obj and checks it: on its own, then against the issuers of ssf.transmitters (fromConfig) and
// of the objects accepted before it (owner: issuer → object name).
func (o *ssfObjects) judgeOne(obj *crd.SSFTransmitter, fromConfig map[string]bool, owner map[string]string) (TransmitterConfig, *objectError) {
	t, err := transmitterFromObject(obj, o.secretFn)
	var oe *objectError
	switch {
	case errors.As(err, &oe):
		return t, oe
	case err != nil:
		return t, &objectError{reason: reasonInvalidField, err: err}
	case fromConfig[t.Issuer]:
		return t, refuseObject(reasonIssuerConflict, "issuer %q is in the controller's ssf.transmitters, which take precedence", t.Issuer)
	case owner[t.Issuer] != "":
		return t, refuseObject(reasonIssuerConflict, "issuer %q is trusted through the older SSFTransmitter %s", t.Issuer, owner[t.Issuer])
	}
	if err := o.s.rcv.CheckTransmitter(t.receiverConfig()); err != nil {
		if t.jwks != nil {
			return t, &objectError{reason: reasonInvalidJWKS, err: fmt.Errorf("spec.jwksSecretRef: %w", err)}
		}
		return t, &objectError{reason: reasonInvalidField, err: err}
	}
	return t, nil
}

// secretRefs are the Secrets obj refers to.
func secretRefs(obj *crd.SSFTransmitter) []*crd.SecretKeyRef {
	sp := obj.Spec
	refs := []*crd.SecretKeyRef{sp.JWKSSecretRef, sp.PushAuthorizationSecretRef}
	if sp.Poll != nil {
		refs = append(refs, sp.Poll.AuthorizationSecretRef)
	}
	if sp.Stream != nil {
		refs = append(refs, sp.Stream.AuthorizationSecretRef)
	}
	return slices.DeleteFunc(refs, func(r *crd.SecretKeyRef) bool { return r == nil })
}

// objectClients runs the poll and stream clients of the objects' transmitters while this replica runs the
// singleton work (between start and stop), each from when its object is accepted until it goes away or
// changes (then it restarts with the change).
type objectClients struct {
	s *ssfServer

	mu   sync.Mutex
	ctx  context.Context // of the running term; nil when not running
	want map[string]TransmitterConfig
	runs map[string]*clientRun
}

type clientRun struct {
	t      TransmitterConfig
	cancel func()
	done   chan struct{}
}

// set makes ts, by issuer, the transmitters whose clients run.
func (oc *objectClients) set(ts map[string]TransmitterConfig) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	oc.want = ts
	oc.sync()
}

func (oc *objectClients) start(ctx context.Context) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	oc.ctx = ctx
	oc.sync()
}

// stop stops every client and waits until SETs in flight are applied.
func (oc *objectClients) stop() {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	oc.ctx = nil
	oc.sync()
}

// sync stops the clients no longer wanted (or changed), and starts the wanted ones not running; oc.mu is held.
func (oc *objectClients) sync() {
	for iss, r := range oc.runs {
		if w, ok := oc.want[iss]; !ok || oc.ctx == nil || !reflect.DeepEqual(w, r.t) {
			r.cancel()
			<-r.done
			delete(oc.runs, iss)
			oc.s.verified.DeleteLabelValues(iss)
		}
	}
	if oc.ctx == nil {
		return
	}
	for iss, t := range oc.want {
		if _, running := oc.runs[iss]; running || (t.Stream == nil && (t.Poll == nil || t.Poll.URL == "")) {
			continue
		}
		var poller *signals.Poller
		if t.Poll != nil && t.Poll.URL != "" {
			var err error
			if poller, err = oc.s.rcv.NewPoller(pollConfig(t, t.Poll.URL)); err != nil {
				oc.s.c.log.Named("ssf").Error("SSFTransmitter poller not started", zap.String("transmitter", iss), zap.Error(err))
				continue
			}
		}
		if t.Stream != nil {
			oc.s.verified.WithLabelValues(iss).Set(0)
		}
		ctx, cancel := context.WithCancel(oc.ctx)
		r := &clientRun{t: t, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			oc.s.runTransmitter(ctx, t, poller)
		}()
		oc.runs[iss] = r
	}
}

var _ component = (*ssfObjects)(nil)
