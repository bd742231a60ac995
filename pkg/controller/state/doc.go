// Package state is the controller's state service: the one writer of policies, revocations, risk states and
// trust bundles (from the admin API, security events and the controller itself). It checks each change, stores
// it durably, and keeps the in-memory revocation index the token service and the issuer ask. The xDS publisher
// serves what the store commits; it writes nothing itself.
package state
