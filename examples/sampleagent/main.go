// Command sampleagent stands in for an AI agent: a plain HTTP client with no idea that agentauth exists. It calls
// tools by URL through the standard HTTP_PROXY setting (or directly, when the sidecar intercepts transparently),
// and prints each answer.
//
//	HTTP_PROXY=http://127.0.0.1:15001 sampleagent http://weather.tools.local/whoami
//	sampleagent -X POST -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"forecast"}}' http://weather.tools.local/mcp
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	method := flag.String("X", "GET", "HTTP method")
	data := flag.String("d", "", "request body")
	var headers headerFlags
	flag.Var(&headers, "H", "extra header 'Name: value' (repeatable)")
	timeout := flag.Duration("timeout", 10*time.Second, "whole-call timeout")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: sampleagent [-X METHOD] [-d BODY] [-H 'K: V'] URL...")
		os.Exit(2)
	}
	failed := false
	for _, u := range flag.Args() {
		if err := call(*method, u, *data, headers, *timeout); err != nil {
			fmt.Fprintf(os.Stderr, "sampleagent: %s %s: %v\n", *method, u, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func call(method, url, data string, headers headerFlags, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var body io.Reader
	if data != "" {
		body = strings.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if data != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("header %q is not 'Name: value'", h)
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	fmt.Printf("%d %s\n%s", resp.StatusCode, http.StatusText(resp.StatusCode), b)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		fmt.Println()
	}
	return nil
}

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }
