package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

const mcpPolicy = `@id("planner-mcp-forecast")
permit (principal == Agent::"spiffe://example.org/agent/planner", action == Action::"tools/call",
        resource == McpTool::"weather.tools.local/forecast");
`

// TestMCPToolCalls: MCP JSON-RPC calls are decided per tool name; a batch with one denied call is refused with a
// JSON-RPC error per call; a malformed body gets a JSON-RPC parse error, never a pass.
func TestMCPToolCalls(t *testing.T) {
	c := startController(t, t.TempDir())
	c.ctl(t, false, "policy", "apply", writeFile(t, t.TempDir(), "mcp.cedar", mcpPolicy))
	p := startManagedPair(t, c)
	post := func(body string) (int, string) {
		t.Helper()
		resp, err := p.agent().Post("http://"+toolHost+"/mcp", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readAll(t, resp)
	}
	call := func(id int, tool string) string {
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": map[string]any{"name": tool}})
		return string(b)
	}

	waitRefused(t, func() (int, string) { return post(call(1, "delete_all")) }, "delete_all")
	if code, body := post(call(1, "forecast")); code != http.StatusOK || !strings.Contains(body, "tools/call forecast") {
		t.Fatalf("forecast: %d %s", code, body)
	}
	code, body := post(call(2, "delete_all"))
	var single struct {
		ID    int `json:"id"`
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if code != http.StatusForbidden || json.Unmarshal([]byte(body), &single) != nil || single.ID != 2 || single.Error.Code != -32001 {
		t.Fatalf("denied call: %d %s, want 403 with a JSON-RPC error -32001 for id 2", code, body)
	}

	code, body = post("[" + call(3, "forecast") + "," + call(4, "delete_all") + "]")
	var batch []struct {
		ID    int `json:"id"`
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if code != http.StatusForbidden || json.Unmarshal([]byte(body), &batch) != nil || len(batch) != 2 ||
		batch[0].ID != 3 || !strings.Contains(batch[0].Error.Message, "not executed") ||
		batch[1].ID != 4 || batch[1].Error.Code != -32001 {
		t.Fatalf("batch with one denied call: %d %s", code, body)
	}

	code, body = post(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":`)
	var parseErr struct {
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if code != http.StatusBadRequest || json.Unmarshal([]byte(body), &parseErr) != nil || parseErr.Error.Code != -32700 {
		t.Fatalf("malformed body: %d %s, want 400 with JSON-RPC -32700", code, body)
	}
}
