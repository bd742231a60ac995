// Package policy is agentauth's authorization model and its evaluation: which agent may do what on which tool,
// for which delegated user, at what risk. Policies are Cedar (github.com/cedar-policy/cedar-go) files; Compile
// parses and validates them against Schema() and an Engine decides requests with them, default deny, every
// decision naming the policies (or the revocation) that determined it. Explain is the dry run for authors.
//
// # Model (schema.cedarschema)
//
//	principal  Agent::"<SPIFFE ID>"  in TrustDomain::"<td>"; attrs trust_domain, path; tags = WIT/attestation attrs
//	resource   Tool::"<tool>"        (tool = Request.Tool: the sidecar's ingress.host, not the Host header)
//	           McpTool::"<tool>/<name>", McpPrompt::"<tool>/<name>", McpResource::"<tool>/<uri>", each in its Tool;
//	           attr name (or uri); McpTool/McpPrompt tags = the call's scalar arguments
//	action     HTTP: Action::"GET", "POST", ... (unlisted methods: "http_other"), all in Action::"http".
//	           MCP: Action::"tools/call", "resources/read", "prompts/get", ... named after the JSON-RPC method
//	           (unlisted methods: "mcp_other"; responses the client posts: "mcp_response"), all in Action::"mcp";
//	           session plumbing (initialize, ping, notifications/*) also in "mcp_session", list methods in
//	           "mcp_discovery".
//	context    host, method, path, auth_method (AuthMethod::"mtls" | "wit-wpt" | "wit-httpsig"), subject_kind
//	           (SubjectKind::"none" | "user" | "self" | "system": who the Txn-Token sub is to the agent),
//	           subject? (only for "user": User::"<Txn-Token sub>"; scopes set; tags = claims), txn?, risk_level
//	           (RiskLevel::"UNKNOWN" | "LOW" | "MEDIUM" | "HIGH"), risk_rank (0-3), assurance_level?, time (Unix s),
//	           now (datetime), hour (0-23 UTC), mcp_method?
//
// Per-method actions (rather than one "http" action with the method in context) put the method in the policy
// scope, where Cedar's validator checks it and the action groups give "any HTTP" / "any MCP" for free. Enum
// entities for auth method and risk level make a misspelt value a load error instead of a rule that never fires.
//
// # Policies
//
// Every policy needs a unique @id("..."): decisions and audit records name it, so it must not change when a file
// is reordered. Compile validates in strict mode (optional attributes and tags need has / hasTag guards) and
// reports every problem as file:line:column. A syntax error stops its file; other errors point at the start of
// the policy, since cedar-go's validator does not report positions inside a policy.
//
// # Decisions
//
// Forbid overrides permit; nothing permitted is denied. An MCP body is decided call by call (Decision.PerCall),
// so a proxy can forward the allowed calls of a batch and answer the others with JSON-RPC errors; the request as a
// whole is Allowed only if every call is. Cedar ignores a policy whose evaluation errors; for a forbid that
// would fail open, so here an erroring forbid denies.
//
// Revocation is not policy. Revocation state arrives from the controller on its own schedule (SSF/CAEP/RISC
// events) and must deny whatever the policies say, with its own id as the reason, so Engine.Decide checks
// Revocations (agent, delegated user, transaction) before evaluating policy rather than compiling revocations
// into generated forbid policies.
//
// # Speed
//
// cedar.Authorize evaluates every policy it is handed. Compile therefore buckets policies by the entity their
// principal and resource scopes name, and Decide hands Cedar only the buckets the request's own entities and
// their ancestors select, and of those only the policies whose action scope admits the request's action, decided
// at Compile from the schema's action groups (see index.go); a policy left out has a false scope, so the answer is
// the same. Building Cedar values is the other cost (cedar-go sorts, hashes and copies every record), so the
// agent, user and MCP entities a Set builds are cached, bounded, and reused only while a request describes them
// identically (cache.go); a request carries only the context attributes, and MCP arguments, that some policy of
// the Set can read (what none reads cannot change a decision); and per-request scratch space is pooled. What is
// left per decision is mostly garbage cedar-go itself makes, and the GC that collects it is the latency tail.
package policy
