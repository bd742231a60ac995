package xds

import (
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/issuer"
)

// ControllerID is the SPIFFE ID a controller of trust domain td presents on its ADS endpoint; sidecars authorize
// exactly this ID. It is the one the issuer reserves for the controller (issuer.ControllerID).
func ControllerID(td spiffeid.TrustDomain) spiffeid.ID { return issuer.ControllerID(td) }
