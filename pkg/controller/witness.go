package controller

import (
	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/audit/witness"
)

// startWitness serves the audit witness to the sidecars on the xDS listener, over the mTLS connection they
// already hold to it, and counts its alarms.
func (c *Controller) startWitness() error {
	w, err := witness.New(witness.Config{Store: c.store, Bundle: c.self, Audit: c.actions, Logger: c.log.Named("witness")})
	if err != nil {
		return err
	}
	c.xds.RegisterService(&agentauthv1.AuditWitnessService_ServiceDesc, w)
	c.reg.MustRegister(w.Collectors()...)
	return nil
}
