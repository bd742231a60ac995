package controller

import (
	"fmt"

	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/issuer/k8sattest"
)

// kubernetesAttestor returns the attestor of issuer.kubernetes, or nil when it is not configured.
func (c *Controller) kubernetesAttestor() (issuer.TokenAttestor, error) {
	cfg := c.cfg.Issuer.Kubernetes
	if cfg == nil {
		return nil, nil
	}
	client, err := k8sattest.NewClient(cfg.Kubeconfig)
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
