// Package mcp reads the JSON-RPC 2.0 messages an agent POSTs to an MCP server over streamable HTTP, so that
// each call (method plus tool, resource or prompt name) can be authorized on its own, and builds the JSON-RPC
// error objects a sidecar answers with when a message is malformed or a call is denied.
//
// Parsing is strict on purpose: the sidecar must see exactly what the MCP server will see. Duplicate object
// member names, invalid UTF-8, case-variant member names ("Method") and anything that is not a JSON-RPC 2.0
// request, notification or response are rejected rather than guessed at. Bad input is an *Error that names the
// JSON-RPC error code to answer with, never a pass.
//
// Error codes used (JSON-RPC 2.0 §5.1, plus one implementation-defined server error):
//
//	-32700 CodeParseError      the body is not valid JSON (incl. duplicate member names, invalid UTF-8)
//	-32600 CodeInvalidRequest  not a JSON-RPC 2.0 request object, empty or oversized batch, wrong content type,
//	                           body over the size limit
//	-32602 CodeInvalidParams   a method that names its target lacks it (tools/call or prompts/get without
//	                           params.name, resources/read without params.uri, completion/complete without ref)
//	-32001 CodeDenied          the call was refused by policy or revocation (a sidecar decision, not the server's)
package mcp
