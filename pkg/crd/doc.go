// Package crd is the controller's side of its custom resources (agentauth.io/v1alpha1, installed by the chart's
// crds.yaml): their Go types, a watch that hands the full current set to a callback on every change, and the
// writer of their Accepted status condition. It uses client-go's dynamic client and informers, so there is no
// generated clientset to keep in step with the schema.
//
//	err := crd.Watch(ctx, client, crd.CedarPolicies, log, func(ps []crd.CedarPolicy) {
//		// ps is every CedarPolicy, sorted by name
//	})
package crd
