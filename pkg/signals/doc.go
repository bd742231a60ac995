// Package signals is the controller's OpenID Shared Signals Framework (SSF) receiver: it takes Security Event
// Tokens by push (RFC 8935, Receiver.ServeHTTP) or poll (RFC 8936, Poller), verifies them (RFC 8417 as profiled
// by SSF: typ secevent+jwt, transmitter keys from a JWKS URL or file, iss, aud, iat bounds, persisted jti
// de-duplication), maps CAEP and RISC events to revocations and risk states (Map, see EVENTS.md), and hands
// them to a Sink that persists them before the transmitter hears 202. StreamClient calls a transmitter's SSF
// stream management API; Receiver.ManageStream keeps the receiver's stream there (created once, its id kept in
// StreamIDs, enabled, polled, verified).
package signals
