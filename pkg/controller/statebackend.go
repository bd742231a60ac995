package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/agentauth/agentauth/internal/confyaml"
	"github.com/agentauth/agentauth/pkg/leader"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/store/kubestore"
)

// State backends (state.backend).
const (
	BackendBbolt      = "bbolt"
	BackendKubernetes = "kubernetes"
)

// StateConfig says where the controller keeps its state (policies, revocations, risk, SSF de-duplication, join
// tokens, issued certificates, the CA).
type StateConfig struct {
	// Backend is "bbolt" (the default: dataDir/state.db, for one controller) or "kubernetes": Secrets in the
	// Kubernetes API shared by every replica, with a Lease electing the replica that runs the singleton work.
	Backend string `yaml:"backend,omitempty"`
	// Kubernetes configures the kubernetes backend; required with it and refused without it.
	Kubernetes *KubernetesStateConfig `yaml:"kubernetes,omitempty"`
}

// KubernetesStateConfig is the kubernetes state backend (pkg/store/kubestore) and the leader election
// (pkg/leader) of the replicas that share it.
type KubernetesStateConfig struct {
	// Namespace holds the records (one Secret each) and the Lease; required. Give the controller a namespace of
	// its own: it reads every Secret there.
	Namespace string `yaml:"namespace"`
	// Kubeconfig is a kubeconfig file; empty means the pod's in-cluster service account.
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
	// Name prefixes the records' Secret names and labels them; replicas with the same namespace and name share
	// one state (default "agentauth").
	Name string `yaml:"name,omitempty"`
	// LeaseName is the coordination.k8s.io Lease the replicas elect their leader with (default "<name>-leader").
	LeaseName string `yaml:"leaseName,omitempty"`
	// Identity names this replica in the Lease; unique among the replicas (default: the host name, in a pod its
	// name).
	Identity string `yaml:"identity,omitempty"`
	// LeaseDuration is how long a leader that stopped renewing keeps the Lease (default 15s); RenewDeadline how
	// long a leader tries to renew before it gives up leading (10s); RetryPeriod how often the others try to take
	// it (2s). LeaseDuration > RenewDeadline > 1.2 × RetryPeriod.
	LeaseDuration time.Duration `yaml:"leaseDuration,omitempty"`
	RenewDeadline time.Duration `yaml:"renewDeadline,omitempty"`
	RetryPeriod   time.Duration `yaml:"retryPeriod,omitempty"`
	// Timeout bounds each state operation, including the wait for this replica to see its own write
	// (default 30s).
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

func (s *StateConfig) setDefaults() {
	if s.Backend == "" {
		s.Backend = BackendBbolt
	}
	k := s.Kubernetes
	if k == nil {
		return
	}
	if k.Name == "" {
		k.Name = kubestore.DefaultName
	}
	if k.LeaseName == "" {
		k.LeaseName = k.Name + "-leader"
	}
	if k.LeaseDuration == 0 {
		k.LeaseDuration = leader.DefaultLeaseDuration
	}
	if k.RenewDeadline == 0 {
		k.RenewDeadline = leader.DefaultRenewDeadline
	}
	if k.RetryPeriod == 0 {
		k.RetryPeriod = leader.DefaultRetryPeriod
	}
	if k.Timeout == 0 {
		k.Timeout = kubestore.DefaultTimeout
	}
}

// validate checks the state section; keys is issuer.keys.
func (s *StateConfig) validate(p *confyaml.Problems, keys string) {
	switch s.Backend {
	case BackendBbolt:
		if s.Kubernetes != nil {
			p.Add("state.kubernetes", "only with backend %s", BackendKubernetes)
		}
		return
	case BackendKubernetes:
	default:
		p.Add("state.backend", "%q is not %s or %s", s.Backend, BackendBbolt, BackendKubernetes)
		return
	}
	if keys == "tpm" {
		p.Add("issuer.keys", "tpm cannot be shared by replicas: with state.backend %s the CA's keys live in the shared state",
			BackendKubernetes)
	}
	k := s.Kubernetes
	if k == nil {
		p.Add("state.kubernetes", "required with backend %s: at least its namespace", BackendKubernetes)
		return
	}
	if errs := validation.IsDNS1123Label(k.Namespace); len(errs) > 0 {
		p.Add("state.kubernetes.namespace", "%q is not a namespace name (a DNS label)", k.Namespace)
	}
	if errs := validation.IsDNS1123Label(k.Name); len(errs) > 0 || len(k.Name) > 40 {
		p.Add("state.kubernetes.name", "%q is not a DNS label of at most 40 characters", k.Name)
	}
	if errs := validation.IsDNS1123Subdomain(k.LeaseName); len(errs) > 0 {
		p.Add("state.kubernetes.leaseName", "%q is not an object name (a DNS subdomain)", k.LeaseName)
	}
	switch {
	case k.RetryPeriod <= 0:
		p.Add("state.kubernetes.retryPeriod", "%v is not positive", k.RetryPeriod)
	case float64(k.RenewDeadline) <= 1.2*float64(k.RetryPeriod):
		p.Add("state.kubernetes.renewDeadline", "%v must exceed 1.2 × retryPeriod (%v)", k.RenewDeadline, k.RetryPeriod)
	case k.LeaseDuration <= k.RenewDeadline:
		p.Add("state.kubernetes.leaseDuration", "%v must exceed renewDeadline (%v)", k.LeaseDuration, k.RenewDeadline)
	}
	if k.Timeout < time.Second {
		p.Add("state.kubernetes.timeout", "%v is under 1s", k.Timeout)
	}
}

// openBackend opens the state backend state.backend names. With bbolt, c.bolt is set too.
func (c *Controller) openBackend(ctx context.Context) (store.Backend, error) {
	k := c.cfg.State.Kubernetes
	if c.cfg.State.Backend != BackendKubernetes {
		st, err := c.openStore()
		if err != nil {
			return nil, err
		}
		c.bolt = st
		return st, nil
	}
	client, err := kubeClient(k.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("state.kubernetes: %w", err)
	}
	c.kube = client
	ctx, cancel := context.WithTimeout(ctx, k.Timeout)
	defer cancel()
	st, err := kubestore.New(ctx, client, kubestore.Options{Namespace: k.Namespace, Name: k.Name, Timeout: k.Timeout,
		Logger: c.log.Named("kubestore")})
	if err != nil {
		return nil, fmt.Errorf("state.kubernetes: %w", err)
	}
	return st, nil
}

// errNoBackup: the admin API's backup is of the bbolt file; the kubernetes backend's state is the API's.
var errNoBackup = errors.New("state.backend is kubernetes: the state is in the namespace's Secrets labelled " +
	kubestore.LabelStore + " (and " + kubestore.LabelSETs + ", " + kubestore.LabelDirect + "); back them up with the cluster")
