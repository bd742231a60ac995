// Package hamt is an immutable hash map whose updates share all but the changed path with the map they came
// from: the storage of a sidecar's xDS state and of the revocation index, which are replaced whole on each
// update while readers keep the version they hold.
package hamt
