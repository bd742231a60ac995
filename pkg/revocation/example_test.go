package revocation_test

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/revocation"
)

func Example() {
	now := time.Now()
	ended := &agentauthv1.Revocation{Id: "r1", Reason: "session revoked", NotBefore: timestamppb.New(now),
		Subject: &agentauthv1.Subject{Kind: string(revocation.KindSPIFFE), Value: "spiffe://example.org/agent/a"}}
	x := revocation.NewIndex(ended)

	call := revocation.Call{Agent: "spiffe://example.org/agent/a", AgentIssuedAt: now.Add(-time.Hour)}
	if r, ch := x.RefusingCall(call, now); r != nil {
		fmt.Printf("%s %s refused by %s: %s\n", ch.Class, ch.Value, r.GetId(), r.Describe())
	}
	call.AgentIssuedAt = now.Add(time.Second) // a credential issued after the event
	r, _ := x.RefusingCall(call, now)
	fmt.Println("after renewal, refused:", r != nil)
	// Output:
	// agent spiffe://example.org/agent/a refused by r1: session revoked
	// after renewal, refused: false
}
