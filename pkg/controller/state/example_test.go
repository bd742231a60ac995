package state_test

import (
	"fmt"
	"path/filepath"
	"time"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/controller/state"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/store"
)

// The admin API and the SSF receiver write through the service; the token service asks its index.
func Example() {
	st, _ := store.Open(filepath.Join("/var/lib/agentauth", "state.db"), store.Options{})
	s, _ := state.New(st, state.Config{})
	_ = s.UpsertRevocation(&agentauthv1.Revocation{Id: "r1", Reason: "account disabled",
		Subject: &agentauthv1.Subject{Kind: "spiffe", Value: "spiffe://example.org/agent/a"}})

	now := time.Now()
	if r := s.Revocations().RefusingClass(revocation.ClassAgent, "spiffe://example.org/agent/a", now, now); r != nil {
		fmt.Println("no token:", r.GetId())
	}
}
