package mcp

import "testing"

func BenchmarkParse(b *testing.B) {
	bodies := map[string][]byte{
		"single": []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"shoes","limit":5}}}`),
		"batch4": []byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b"}},{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///x"}},{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}]`),
	}
	for name, body := range bodies {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := Parse("application/json", body, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
