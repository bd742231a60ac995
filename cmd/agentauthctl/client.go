package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/agentauth/agentauth/pkg/controller"
)

// maxAnswer bounds an admin API answer the CLI reads.
const maxAnswer = 64 << 20

// call sends one admin API request and returns the answer's body; a non-2xx answer is an error carrying the
// controller's message.
func (a *app) call(ctx context.Context, method, path string, body any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := a.send(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
}

// send sends one admin API request and returns the answer to be read by the caller (who closes its body); a
// non-2xx answer is an error carrying the controller's message.
func (a *app) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", a.socket)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, method, "http://controller"+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("controller admin socket %s: %w", a.socket, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var ae controller.APIError
		if b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer)); err == nil && json.Unmarshal(b, &ae) == nil && ae.Error != "" {
			return nil, errors.New(ae.Error)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return resp, nil
}

// get calls GET path and decodes the answer into v; it returns the raw answer too, for -o json and yaml.
func (a *app) get(ctx context.Context, path string, v any) ([]byte, error) {
	b, err := a.call(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	return b, nil
}
