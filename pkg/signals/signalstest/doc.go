// Package signalstest provides an OpenID Shared Signals (SSF) transmitter for tests, as net/http/httptest provides
// servers: a real HTTP server on 127.0.0.1 with discovery metadata, a JWKS, stream management, verification, RFC 8935
// push and RFC 8936 poll delivery of SETs signed with go-jose. Only tests use it.
//
// It speaks the wire protocol itself and does not import package signals, so that the tests inside package
// signals can use it (an import of signals here would be a cycle) and so that a wire mistake in signals' types is
// not hidden by the fake sharing them.
//
//	tr := signalstest.New(t, signalstest.Options{Audience: "https://receiver.example"})
//	// configure the receiver with tr.Issuer, tr.URL+"/jwks" and tr.Authorization; it creates a stream, then:
//	tr.Send(streamID, signalstest.SET{Subject: sub, Events: map[string]map[string]any{event: nil}})
package signalstest
