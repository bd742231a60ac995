// Package store keeps the controller's state in an embedded bbolt file so a restart loses nothing: policies,
// revocations, risk states, trust bundles, issued-certificate bookkeeping, CA material, SET jti de-duplication
// join tokens and the SSF stream ids of the controller's receiver, plus a version counter that every write advances. Each write is one fsync'd bbolt
// transaction, so it is durable before the call returns; subscribers hear of committed changes in commit order.
// A damaged file is ErrCorrupt (at Open, which checks it whole, or from the transaction that meets the damage),
// never a panic; Backup writes a consistent copy while writers carry on.
package store
