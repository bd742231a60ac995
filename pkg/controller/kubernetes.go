package controller

import (
	"fmt"

	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/issuer/k8sattest"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubernetesAttestor returns the attestor of issuer.kubernetes, or nil when it is not configured.
func (c *Controller) kubernetesAttestor() (issuer.TokenAttestor, error) {
	cfg := c.cfg.Issuer.Kubernetes
	if cfg == nil {
		return nil, nil
	}
	client, err := kubeClient(cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("issuer.kubernetes: %w", err)
	}
	a, err := k8sattest.New(*cfg, k8sattest.Options{Client: client, TrustDomain: c.td,
		Logger: c.log.Named("k8sattest"), Registerer: c.reg})
	if err != nil {
		return nil, fmt.Errorf("issuer.kubernetes: %w", err)
	}
	return a, nil
}

// The Kubernetes API client's own rate limit. client-go's default (5 requests/s, bursts of 10) is meant for tools;
// the state backend makes three or four requests per Security Event Token, so under it a steady stream of SETs
// waited 200 ms per request, about 1 s from push to 202. The API server's priority and fairness protects it
// either way. Istio's control plane uses the same figures.
const (
	kubeQPS   = 80
	kubeBurst = 160
)

// kubeClient returns a clientset for the API server in kubeconfig, or the in-cluster one when kubeconfig is empty.
func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := kubeRESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// kubeRESTConfig is the client config of kubeClient, for the other kinds of client (dynamic).
func kubeRESTConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("Kubernetes API client: %w", err)
	}
	cfg.QPS, cfg.Burst = kubeQPS, kubeBurst
	return cfg, nil
}
