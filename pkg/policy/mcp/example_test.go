package mcp_test

import (
	"errors"
	"fmt"

	"github.com/agentauth/agentauth/pkg/policy/mcp"
)

func ExampleParse() {
	body := []byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}},
	                 {"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///notes"}}]`)
	msg, err := mcp.Parse("application/json", body, 64<<10)
	if err != nil {
		return
	}
	for _, c := range msg.Calls {
		fmt.Println(string(c.ID), c.Method, c.Name)
	}

	_, err = mcp.Parse("application/json", []byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call"}`), 64<<10)
	var e *mcp.Error
	if errors.As(err, &e) {
		fmt.Println(string(e.Response()))
	}
	// Output:
	// 1 tools/call search
	// 2 resources/read file:///notes
	// {"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"tools/call needs a params object with name"}}
}
