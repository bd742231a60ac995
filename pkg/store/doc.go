// Package store keeps the controller's state in an embedded bbolt file so a restart loses nothing: policies,
// revocations, risk states, trust bundles, issued-certificate bookkeeping, CA material, SET jti de-duplication
// and join tokens, plus a version counter that every write advances. Each write is one fsync'd bbolt
// transaction, so it is durable before the call returns; subscribers hear of committed changes in commit order.
package store
