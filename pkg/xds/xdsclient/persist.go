package xdsclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/atomicfile"
	"github.com/agentauth/agentauth/pkg/xds"
)

// The saved state is a small JSON envelope (readable with jq when an operator wonders what a sidecar enforces)
// around the resources in their protobuf wire form, exactly as the controller sent them. The checksum covers the
// types as written, so a truncated or altered file is refused rather than half-applied.
const (
	stateFormat = "agentauth-xds-state/1"
	// minSaveInterval spaces writes of the state file: a burst of updates (a revocation storm) costs one write a
	// second, not one per update. The last state is always written.
	minSaveInterval = time.Second
)

var deterministic = proto.MarshalOptions{Deterministic: true}

type savedState struct {
	Format      string          `json:"format"`
	TrustDomain string          `json:"trustDomain"`
	SavedAt     time.Time       `json:"savedAt"`
	SHA256      string          `json:"sha256"`
	Types       json.RawMessage `json:"types"`
}

type savedType struct {
	TypeURL   string          `json:"typeUrl"`
	Version   string          `json:"version"`
	Resources []savedResource `json:"resources"`
}

type savedResource struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Value   []byte `json:"value"` // protobuf wire form
}

// ErrStateRefused wraps every reason a saved state file is not used (corrupt, another trust domain, invalid).
var ErrStateRefused = errors.New("xds: saved state refused")

// save writes the current state and the version of each synced type to the state file, atomically (temp file
// and rename, mode 0600). A state that is not complete (some type never received) is not written: restoring it
// could not make the sidecar ready anyway.
func (c *Client) save(now time.Time) error {
	st := c.State()
	status := c.Status()
	if !status.Synced {
		return nil
	}
	types := make([]savedType, 0, len(agentauthv1.ServedTypes()))
	for _, typeURL := range agentauthv1.ServedTypes() {
		m, _ := st.typed(typeURL)
		t := savedType{TypeURL: typeURL, Version: status.Versions[typeURL], Resources: make([]savedResource, 0, m.Len())}
		var err error
		m.Each(func(name string, e entry) {
			if err != nil {
				return
			}
			var b []byte
			b, err = deterministic.Marshal(e.msg)
			t.Resources = append(t.Resources, savedResource{Name: name, Version: e.version, Value: b})
		})
		if err != nil {
			return fmt.Errorf("xds: saving state: %w", err)
		}
		slices.SortFunc(t.Resources, func(a, b savedResource) int { return strings.Compare(a.Name, b.Name) })
		types = append(types, t)
	}
	raw, err := json.Marshal(types)
	if err != nil {
		return fmt.Errorf("xds: saving state: %w", err)
	}
	sum := sha256.Sum256(raw)
	data, err := json.Marshal(savedState{Format: stateFormat, TrustDomain: c.cfg.TrustDomain, SavedAt: now.UTC(),
		SHA256: hex.EncodeToString(sum[:]), Types: raw})
	if err != nil {
		return fmt.Errorf("xds: saving state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(c.cfg.StateFile), 0o700); err != nil {
		return fmt.Errorf("xds: saving state: %w", err)
	}
	if err := atomicfile.Write(c.cfg.StateFile, data); err != nil {
		return fmt.Errorf("xds: saving state: %w", err)
	}
	return nil
}

// restore loads the state file, checks it as an update from the controller is checked (decode, structure,
// validators) and for this client's trust domain, and makes it the current state: the sidecar enforces it
// (fail-static) until the controller answers, and resumes from its versions. Any problem leaves the client empty
// (fail-closed) and returns an error wrapping ErrStateRefused; a missing file returns an os.ErrNotExist error.
func (c *Client) restore() (time.Time, error) {
	data, err := os.ReadFile(c.cfg.StateFile)
	if err != nil {
		return time.Time{}, err
	}
	refuse := func(format string, args ...any) (time.Time, error) {
		return time.Time{}, fmt.Errorf("%w: %s: %s", ErrStateRefused, c.cfg.StateFile, fmt.Sprintf(format, args...))
	}
	var saved savedState
	if err := json.Unmarshal(data, &saved); err != nil {
		return refuse("corrupt: %v", err)
	}
	if saved.Format != stateFormat {
		return refuse("format %q, want %q", saved.Format, stateFormat)
	}
	if sum := sha256.Sum256(saved.Types); hex.EncodeToString(sum[:]) != saved.SHA256 {
		return refuse("corrupt: checksum mismatch")
	}
	if saved.TrustDomain != c.cfg.TrustDomain {
		return refuse("it is the state of trust domain %q, this sidecar is in %q", saved.TrustDomain, c.cfg.TrustDomain)
	}
	var types []savedType
	if err := json.Unmarshal(saved.Types, &types); err != nil {
		return refuse("corrupt: %v", err)
	}
	st := emptyState()
	versions := map[string]string{}
	for _, t := range types {
		if _, dup := versions[t.TypeURL]; dup {
			return refuse("type %s appears twice", t.TypeURL)
		}
		resp := &discovery.DeltaDiscoveryResponse{TypeUrl: t.TypeURL, SystemVersionInfo: t.Version}
		for _, r := range t.Resources {
			resp.Resources = append(resp.Resources, &discovery.Resource{Name: r.Name, Version: r.Version,
				Resource: &anypb.Any{TypeUrl: t.TypeURL, Value: r.Value}})
		}
		updates, err := c.decode(resp)
		if err != nil {
			return refuse("%v", err)
		}
		st = st.with(t.TypeURL, updates, nil)
		versions[t.TypeURL] = t.Version
	}
	for _, typeURL := range agentauthv1.ServedTypes() {
		if _, ok := versions[typeURL]; !ok {
			return refuse("no %s resources: the state is incomplete", xds.ShortType(typeURL))
		}
	}
	c.state.Store(st)
	c.mu.Lock()
	defer c.mu.Unlock()
	for typeURL, v := range versions {
		c.status.Versions[typeURL] = v
		c.synced[typeURL] = true
	}
	c.status.Synced = true
	c.status.RestoredAt = saved.SavedAt
	return saved.SavedAt, nil
}

// persist saves the state after updates until ctx ends, at most once per minSaveInterval, and once more at the end
// if an update is still unsaved.
func (c *Client) persist(ctx context.Context) {
	write := func() {
		if err := c.save(time.Now()); err != nil {
			c.log.Error("xds: could not save the state; a restart during a controller outage would start empty",
				zap.String("file", c.cfg.StateFile), zap.Error(err))
		}
	}
	for {
		select {
		case <-ctx.Done():
			select {
			case <-c.dirty:
				write()
			default:
			}
			return
		case <-c.dirty:
			write()
		}
		t := time.NewTimer(minSaveInterval)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// markDirty asks persist to save the state.
func (c *Client) markDirty() {
	if c.dirty == nil {
		return
	}
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}
