package controller

import (
	"context"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/audit/witness"
)

// auditWitness serves the audit witness to the sidecars on the xDS listener, over the mTLS connection they
// already hold to it, and counts its alarms. It comes after xdsServer, whose gRPC server it registers on.
type auditWitness struct{ c *Controller }

func (a *auditWitness) provision(context.Context) error {
	c := a.c
	w, err := witness.New(witness.Config{Store: c.store, Bundle: c.self, Audit: c.actions, Logger: c.log.Named("witness"),
		Connected: func() []string {
			var ids []string
			for _, n := range c.xds.Nodes() {
				ids = append(ids, n.ID)
			}
			return ids
		}})
	if err != nil {
		return err
	}
	c.xds.RegisterService(&agentauthv1.AuditWitnessService_ServiceDesc, w)
	for _, col := range w.Collectors() {
		if err := c.reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}

// The witness answers on the xDS server, which xdsServer starts and stops.
func (a *auditWitness) start(context.Context, func(error)) error { return nil }
func (a *auditWitness) stop(context.Context)                     {}

var _ component = (*auditWitness)(nil)
