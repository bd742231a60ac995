// Package mcp reads the JSON-RPC 2.0 messages an agent POSTs to an MCP server over streamable HTTP, so that
// each call (method plus tool, resource or prompt name) can be authorized on its own, and builds the JSON-RPC
// error objects a sidecar answers with when a message is malformed or a call is denied.
//
// Parsing is strict on purpose: the sidecar must see exactly what the MCP server will see. Duplicate object
// member names, invalid UTF-8, a charset other than utf-8, member names that differ only in case (under Unicode
// simple folding, as Go's encoding/json matches them: "method" beside "Method" or "mEthod") in any object the
// parser reads, a lone case variant of a member it needs ("Method" without "method"), and anything that is not
// a JSON-RPC 2.0 request, notification or response are rejected rather than guessed at. So are resource URIs
// with . or .. segments (plain, percent-encoded or before ";params") or a backslash: policy matches a URI as
// written, while a server resolves "file:///public/../private" outside what policy allowed. Bad input is an
// *Error that names the JSON-RPC error code to answer with, never a pass.
//
// Error codes used (JSON-RPC 2.0 §5.1, plus one implementation-defined server error):
//
//	-32700 CodeParseError      the body is not valid JSON (incl. duplicate member names, invalid UTF-8)
//	-32600 CodeInvalidRequest  not a JSON-RPC 2.0 request object (incl. case-variant member names at its top
//	                           level), empty or oversized batch, wrong content type or charset, body over the
//	                           size limit
//	-32602 CodeInvalidParams   a method that names its target lacks it (tools/call or prompts/get without
//	                           params.name, resources/read without params.uri, completion/complete without ref),
//	                           or has case-variant member names in params, params.arguments or params.ref,
//	                           or a resource URI with dot segments
//	-32001 CodeDenied          the call was refused by policy or revocation (a sidecar decision, not the server's)
package mcp
