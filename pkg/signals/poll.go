package signals

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"go.uber.org/zap"
)

// PollConfig configures a Poller for one stream with poll delivery (RFC 8936).
type PollConfig struct {
	// Issuer names the configured transmitter the stream belongs to; its SETs are verified against it.
	Issuer string
	// EndpointURL is the stream's poll endpoint (delivery.endpoint_url of the stream configuration).
	EndpointURL string
	// Authorization, if set, is sent as the Authorization header (e.g. "Bearer …").
	Authorization string
	// MaxEvents is the most SETs asked for per poll (default 25).
	MaxEvents int
	// ReturnImmediately asks the transmitter to answer at once when it has nothing, instead of holding the
	// request open until it has (long polling).
	ReturnImmediately bool
	// Interval is the wait after a poll that brought nothing (default 5s). With long polling there is none: the
	// next poll goes out at once, unless the empty answer came back within a second (a transmitter that does not
	// hold requests), and then only the rest of that second.
	Interval time.Duration
	// MaxBackoff caps the wait after failed polls, which doubles from 1s with jitter (default 5m).
	MaxBackoff time.Duration
	// MaxResponseBytes caps a poll response (default MaxEvents × the receiver's body limit + 64 KiB).
	MaxResponseBytes int64
	// HTTPClient defaults to the receiver's client. Long polling needs a timeout above the transmitter's hold time.
	HTTPClient *http.Client
}

// Poller fetches SETs from a transmitter's poll endpoint, processes them through its Receiver, and reports each
// back in the next request: applied or duplicate SETs in ack, refused ones in setErrs with the RFC 8935 error
// code. A SET that failed for our own reasons is neither, so the transmitter delivers it again. Acks live in
// memory until sent: after a crash the transmitter redelivers, and de-duplication makes that harmless.
type Poller struct {
	r      *Receiver
	cfg    PollConfig
	client *http.Client
	log    *zap.Logger

	mu   sync.Mutex // guards acks and errs; polls themselves should not overlap
	acks map[string]bool
	errs map[string]setErrorBody

	// minHold is how long an empty long-poll answer must have been held for the next poll to go out at once;
	// sleep waits between polls. Tests replace both.
	minHold time.Duration
	sleep   func(context.Context, time.Duration) bool
}

// PollResult counts what one poll did.
type PollResult struct {
	// Received is how many SETs the transmitter returned.
	Received int
	// Acked SETs were applied (or had been); Refused ones will be reported in setErrs; Retry ones failed on our
	// side and are left for redelivery.
	Acked, Refused, Retry int
	// MoreAvailable is the transmitter's moreAvailable.
	MoreAvailable bool
}

type pollRequest struct {
	Ack               []string                `json:"ack,omitempty"`
	SetErrs           map[string]setErrorBody `json:"setErrs,omitempty"`
	MaxEvents         int                     `json:"maxEvents"`
	ReturnImmediately bool                    `json:"returnImmediately"`
}

type pollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable"`
}

// NewPoller returns a Poller for a stream of the configured transmitter cfg.Issuer.
func (r *Receiver) NewPoller(cfg PollConfig) (*Poller, error) {
	if !r.Trusts(cfg.Issuer) {
		return nil, fmt.Errorf("signals: poller: %q is not a configured transmitter", cfg.Issuer)
	}
	if err := checkOutboundURL(cfg.EndpointURL); err != nil {
		return nil, fmt.Errorf("signals: poller for %s: endpoint: %w", cfg.Issuer, err)
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 25
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = int64(cfg.MaxEvents)*int64(r.maxBody) + 64<<10
	}
	client := cfg.HTTPClient
	if client == nil {
		client = r.client
	}
	return &Poller{r: r, cfg: cfg, client: client, acks: map[string]bool{}, errs: map[string]setErrorBody{},
		minHold: time.Second, sleep: sleep, log: r.log.With(zap.String("transmitter", cfg.Issuer), zap.String("poll", cfg.EndpointURL))}, nil
}

// Poll makes one request: it reports the pending acks and errors, and processes the SETs returned, in jti
// order. The error is the first failure on our side (transport, transmitter answer, Sink); refused SETs are
// not errors, they are reported to the transmitter.
func (p *Poller) Poll(ctx context.Context) (PollResult, error) {
	var res PollResult
	resp, sent, err := p.exchange(ctx, p.cfg.MaxEvents, p.cfg.ReturnImmediately)
	if err != nil {
		return res, err
	}
	p.forget(sent)
	res.Received, res.MoreAvailable = len(resp.Sets), resp.MoreAvailable
	var firstErr error
	for _, jti := range slices.Sorted(maps.Keys(resp.Sets)) {
		_, err := p.r.Process(ctx, resp.Sets[jti])
		var se *SETError
		p.mu.Lock()
		switch {
		case err == nil:
			p.acks[jti] = true
			res.Acked++
		case errors.As(err, &se):
			p.errs[jti] = setErrorBody{Err: se.Code, Description: se.Err.Error()}
			res.Refused++
		default:
			res.Retry++
			if firstErr == nil {
				firstErr = err
			}
		}
		p.mu.Unlock()
	}
	return res, firstErr
}

// Flush sends the pending acks and errors without asking for SETs (maxEvents 0).
func (p *Poller) Flush(ctx context.Context) error {
	p.mu.Lock()
	empty := len(p.acks) == 0 && len(p.errs) == 0
	p.mu.Unlock()
	if empty {
		return nil
	}
	_, sent, err := p.exchange(ctx, 0, true)
	if err != nil {
		return err
	}
	p.forget(sent)
	return nil
}

// Run polls until ctx is done, then flushes the pending acks (with its own 5s budget). Failed polls back off
// exponentially with jitter. It returns the flush's error, if any.
func (p *Poller) Run(ctx context.Context) error {
	var backoff time.Duration
	for {
		sent := time.Now()
		res, err := p.Poll(ctx)
		if ctx.Err() != nil {
			break
		}
		var wait time.Duration
		switch {
		case err != nil:
			backoff = min(max(2*backoff, time.Second), p.cfg.MaxBackoff)
			wait = backoff/2 + rand.N(backoff/2+1)
			p.log.Warn("SET poll failed", zap.Error(err), zap.Duration("retry_in", wait))
		case res.MoreAvailable || p.pending():
			backoff = 0
		case res.Received == 0 && p.cfg.ReturnImmediately:
			backoff = 0
			wait = p.cfg.Interval
		case res.Received == 0:
			// A long poll that was held and came back empty: a SET may be waiting now, so ask at once.
			backoff = 0
			wait = p.minHold - time.Since(sent)
		default:
			backoff = 0
		}
		if wait > 0 && !p.sleep(ctx, wait) {
			break
		}
	}
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return p.Flush(flushCtx)
}

// sleep waits d or until ctx is done; it reports whether the wait ran out.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (p *Poller) pending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acks) > 0 || len(p.errs) > 0
}

// exchange posts one poll request carrying the pending acks and errors, and returns the response and what was
// sent (to forget once the request succeeded).
func (p *Poller) exchange(ctx context.Context, maxEvents int, returnImmediately bool) (*pollResponse, pollRequest, error) {
	p.mu.Lock()
	sent := pollRequest{Ack: slices.Sorted(maps.Keys(p.acks)), SetErrs: maps.Clone(p.errs),
		MaxEvents: maxEvents, ReturnImmediately: returnImmediately}
	p.mu.Unlock()
	body, err := json.Marshal(sent)
	if err != nil {
		return nil, sent, fmt.Errorf("signals: poll request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.EndpointURL, bytes.NewReader(body))
	if err != nil {
		return nil, sent, fmt.Errorf("signals: poll %s: %w", p.cfg.EndpointURL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if p.cfg.Authorization != "" {
		req.Header.Set("Authorization", p.cfg.Authorization)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, sent, fmt.Errorf("signals: poll %s: %w", p.cfg.EndpointURL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, p.cfg.MaxResponseBytes+1))
	if err != nil {
		return nil, sent, fmt.Errorf("signals: poll %s: %w", p.cfg.EndpointURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, sent, fmt.Errorf("signals: poll %s: HTTP %d: %s", p.cfg.EndpointURL, resp.StatusCode, truncate(string(raw), 256))
	}
	if int64(len(raw)) > p.cfg.MaxResponseBytes {
		return nil, sent, fmt.Errorf("signals: poll %s: %w: response over %d bytes", p.cfg.EndpointURL, autherr.ErrTooLarge, p.cfg.MaxResponseBytes)
	}
	var out pollResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, sent, fmt.Errorf("signals: poll %s: %w: response is not RFC 8936 JSON: %v", p.cfg.EndpointURL, autherr.ErrMalformed, err)
	}
	return &out, sent, nil
}

// forget drops the acks and errors a successful request delivered.
func (p *Poller) forget(sent pollRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, jti := range sent.Ack {
		delete(p.acks, jti)
	}
	for jti := range sent.SetErrs {
		delete(p.errs, jti)
	}
}
