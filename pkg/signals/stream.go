package signals

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// Delivery method URIs (SSF §6.1).
const (
	DeliveryPush = "urn:ietf:rfc:8935"
	DeliveryPoll = "urn:ietf:rfc:8936"
)

// TransmitterMetadata is an SSF transmitter's configuration (SSF §7.1), from /.well-known/ssf-configuration.
type TransmitterMetadata struct {
	SpecVersion              string                `json:"spec_version,omitempty"`
	Issuer                   string                `json:"issuer"`
	JWKSURI                  string                `json:"jwks_uri,omitempty"`
	DeliveryMethodsSupported []string              `json:"delivery_methods_supported,omitempty"`
	ConfigurationEndpoint    string                `json:"configuration_endpoint,omitempty"`
	StatusEndpoint           string                `json:"status_endpoint,omitempty"`
	AddSubjectEndpoint       string                `json:"add_subject_endpoint,omitempty"`
	RemoveSubjectEndpoint    string                `json:"remove_subject_endpoint,omitempty"`
	VerificationEndpoint     string                `json:"verification_endpoint,omitempty"`
	CriticalSubjectMembers   []string              `json:"critical_subject_members,omitempty"`
	AuthorizationSchemes     []AuthorizationScheme `json:"authorization_schemes,omitempty"`
	DefaultSubjects          string                `json:"default_subjects,omitempty"`
}

// AuthorizationScheme names a way to authorize to the transmitter's management API (SSF §7.1.1).
type AuthorizationScheme struct {
	SpecURN string `json:"spec_urn"`
}

// Delivery is a stream's delivery method (SSF §6.1): for push, EndpointURL is ours and AuthorizationHeader what
// the transmitter must send; for poll, EndpointURL is the transmitter's.
type Delivery struct {
	Method              string `json:"method"`
	EndpointURL         string `json:"endpoint_url,omitempty"`
	AuthorizationHeader string `json:"authorization_header,omitempty"`
}

// StreamConfig is a stream's configuration (SSF §8.1.1).
type StreamConfig struct {
	StreamID                string    `json:"stream_id"`
	Iss                     string    `json:"iss"`
	Aud                     Audience  `json:"aud"`
	EventsSupported         []string  `json:"events_supported,omitempty"`
	EventsRequested         []string  `json:"events_requested,omitempty"`
	EventsDelivered         []string  `json:"events_delivered,omitempty"`
	Delivery                *Delivery `json:"delivery,omitempty"`
	MinVerificationInterval int       `json:"min_verification_interval,omitempty"`
	Description             string    `json:"description,omitempty"`
	InactivityTimeout       int       `json:"inactivity_timeout,omitempty"`
}

// Audience is a JWT aud: one string or an array of strings.
type Audience []string

// UnmarshalJSON accepts a string or an array of strings.
func (a *Audience) UnmarshalJSON(data []byte) error {
	list, err := audience(data)
	if err != nil {
		return err
	}
	*a = list
	return nil
}

// StreamRequest is what the receiver supplies when creating a stream. A nil Delivery asks for poll delivery.
type StreamRequest struct {
	Delivery        *Delivery `json:"delivery,omitempty"`
	EventsRequested []string  `json:"events_requested,omitempty"`
	Description     string    `json:"description,omitempty"`
}

// StreamStatus is a stream's status (SSF §8.1.2): enabled, paused or disabled.
type StreamStatus struct {
	StreamID string `json:"stream_id"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
}

// StreamClientConfig configures Discover.
type StreamClientConfig struct {
	// Issuer is the transmitter's issuer URL; the metadata must name exactly this issuer.
	Issuer string
	// Authorization is sent as the Authorization header on management calls (e.g. "Bearer …").
	Authorization string
	// HTTPClient defaults to a client with a 10s timeout.
	HTTPClient *http.Client
}

// StreamClient is the receiver side of SSF stream management with one transmitter.
type StreamClient struct {
	cfg    StreamClientConfig
	client *http.Client
	md     TransmitterMetadata
}

// maxManagementBytes caps a management API response.
const maxManagementBytes = 1 << 20

// Discover fetches the transmitter's metadata (SSF §7.2) and returns a client for its management API. URLs must
// be https, or http to a loopback address.
func Discover(ctx context.Context, cfg StreamClientConfig) (*StreamClient, error) {
	c := &StreamClient{cfg: cfg, client: cfg.HTTPClient}
	if c.client == nil {
		c.client = &http.Client{Timeout: 10 * time.Second}
	}
	wellKnown, err := metadataURL(cfg.Issuer)
	if err != nil {
		return nil, err
	}
	if err := c.call(ctx, http.MethodGet, wellKnown, nil, http.StatusOK, &c.md); err != nil {
		return nil, err
	}
	if c.md.Issuer != cfg.Issuer {
		return nil, fmt.Errorf("signals: %w: metadata at %s names issuer %q, want %q", autherr.ErrMismatch, wellKnown, c.md.Issuer, cfg.Issuer)
	}
	return c, nil
}

// metadataURL inserts /.well-known/ssf-configuration between the issuer's host and path (SSF §7.2).
func metadataURL(issuer string) (string, error) {
	if err := checkOutboundURL(issuer); err != nil {
		return "", fmt.Errorf("signals: issuer: %w", err)
	}
	u, _ := url.Parse(issuer)
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("signals: issuer %q has a query or fragment", issuer)
	}
	u.Path = "/.well-known/ssf-configuration" + strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// Metadata is the transmitter's metadata as discovered.
func (c *StreamClient) Metadata() TransmitterMetadata { return c.md }

// CreateStream creates a stream (SSF §8.1.1.1) and checks that the transmitter answered as its issuer.
func (c *StreamClient) CreateStream(ctx context.Context, req StreamRequest) (*StreamConfig, error) {
	ep, err := c.endpoint("configuration_endpoint", c.md.ConfigurationEndpoint)
	if err != nil {
		return nil, err
	}
	var out StreamConfig
	if err := c.call(ctx, http.MethodPost, ep, req, http.StatusCreated, &out); err != nil {
		return nil, err
	}
	return &out, c.checkStream(&out)
}

// Stream reads a stream's configuration.
func (c *StreamClient) Stream(ctx context.Context, streamID string) (*StreamConfig, error) {
	ep, err := c.endpoint("configuration_endpoint", c.md.ConfigurationEndpoint)
	if err != nil {
		return nil, err
	}
	var out StreamConfig
	if err := c.call(ctx, http.MethodGet, withStreamID(ep, streamID), nil, http.StatusOK, &out); err != nil {
		return nil, err
	}
	return &out, c.checkStream(&out)
}

// DeleteStream deletes a stream.
func (c *StreamClient) DeleteStream(ctx context.Context, streamID string) error {
	ep, err := c.endpoint("configuration_endpoint", c.md.ConfigurationEndpoint)
	if err != nil {
		return err
	}
	return c.call(ctx, http.MethodDelete, withStreamID(ep, streamID), nil, http.StatusNoContent, nil)
}

// Status reads a stream's status.
func (c *StreamClient) Status(ctx context.Context, streamID string) (*StreamStatus, error) {
	ep, err := c.endpoint("status_endpoint", c.md.StatusEndpoint)
	if err != nil {
		return nil, err
	}
	var out StreamStatus
	if err := c.call(ctx, http.MethodGet, withStreamID(ep, streamID), nil, http.StatusOK, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetStatus asks the transmitter to enable, pause or disable a stream.
func (c *StreamClient) SetStatus(ctx context.Context, st StreamStatus) (*StreamStatus, error) {
	ep, err := c.endpoint("status_endpoint", c.md.StatusEndpoint)
	if err != nil {
		return nil, err
	}
	var out StreamStatus
	if err := c.call(ctx, http.MethodPost, ep, st, http.StatusOK, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RequestVerification asks the transmitter to send a verification event with state over the stream
// (SSF §8.1.4.2). Receiver.Verify also waits for it.
func (c *StreamClient) RequestVerification(ctx context.Context, streamID, state string) error {
	ep, err := c.endpoint("verification_endpoint", c.md.VerificationEndpoint)
	if err != nil {
		return err
	}
	body := struct {
		StreamID string `json:"stream_id"`
		State    string `json:"state,omitempty"`
	}{streamID, state}
	return c.call(ctx, http.MethodPost, ep, body, http.StatusNoContent, nil)
}

// Verify asks the transmitter c for a verification event on streamID with a fresh random state, and waits until
// this receiver has processed that event (pushed to ServeHTTP or fetched by a Poller) or ctx is done. While it
// waits, a verification event for the stream with another state is refused with invalid_state.
func (r *Receiver) Verify(ctx context.Context, c *StreamClient, streamID string) error {
	var b [16]byte
	_, _ = rand.Read(b[:])
	state := base64.RawURLEncoding.EncodeToString(b[:])
	done, cancel := r.expectVerification(c.md.Issuer, streamID, state)
	defer cancel()
	if err := c.RequestVerification(ctx, streamID, state); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("signals: verification of stream %q: no verification event arrived: %w", streamID, ctx.Err())
	}
}

func (c *StreamClient) checkStream(s *StreamConfig) error {
	if s.Iss != c.md.Issuer {
		return fmt.Errorf("signals: %w: stream %q names issuer %q, want %q", autherr.ErrMismatch, s.StreamID, s.Iss, c.md.Issuer)
	}
	if s.StreamID == "" {
		return fmt.Errorf("signals: %w: stream configuration has no stream_id", autherr.ErrMalformed)
	}
	return nil
}

func (c *StreamClient) endpoint(name, raw string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("signals: transmitter %s publishes no %s", c.md.Issuer, name)
	}
	if err := checkOutboundURL(raw); err != nil {
		return "", fmt.Errorf("signals: %s: %w", name, err)
	}
	return raw, nil
}

func withStreamID(endpoint, streamID string) string {
	u, _ := url.Parse(endpoint)
	q := u.Query()
	q.Set("stream_id", streamID)
	u.RawQuery = q.Encode()
	return u.String()
}

// call makes one management request with a JSON body (if in is not nil) and decodes a JSON answer into out
// (if not nil), requiring status want.
func (c *StreamClient) call(ctx context.Context, method, endpoint string, in any, want int, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("signals: %s %s: %w", method, endpoint, err)
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, body)
	if err != nil {
		return fmt.Errorf("signals: %s %s: %w", method, endpoint, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cfg.Authorization != "" {
		req.Header.Set("Authorization", c.cfg.Authorization)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("signals: %s %s: %w", method, endpoint, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxManagementBytes+1))
	if err != nil {
		return fmt.Errorf("signals: %s %s: %w", method, endpoint, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("signals: %s %s: HTTP %d (want %d): %s", method, endpoint, resp.StatusCode, want, truncate(string(raw), 256))
	}
	if len(raw) > maxManagementBytes {
		return fmt.Errorf("signals: %s %s: %w: response over %d bytes", method, endpoint, autherr.ErrTooLarge, maxManagementBytes)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("signals: %s %s: %w: %v", method, endpoint, autherr.ErrMalformed, err)
		}
	}
	return nil
}
