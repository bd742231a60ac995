// Package replay remembers one-time identifiers (a WPT jti, an HTTP-signature nonce) until they expire, so a
// receiver can refuse a proof it has already accepted.
//
// The cache is sharded for concurrency, bounded in memory, and fails closed: when it is full it refuses new
// identifiers rather than forget one that could still be replayed. It is local to one process; replicas that do
// not share it give weaker protection (an attacker may replay a proof once per replica).
package replay
