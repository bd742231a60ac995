package xdsserver

import (
	"testing"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

func TestSync(t *testing.T) {
	const typ = agentauthv1.PolicyType
	tests := []struct {
		name string
		n    NodeStatus
		want SyncStatus
	}{
		{"acked current", NodeStatus{Acked: map[string]string{typ: "1.5"}}, Synced},
		{"acked older, update pending", NodeStatus{Acked: map[string]string{typ: "1.4"}, Pending: map[string]string{typ: "1.5"}}, Stale},
		{"acked older", NodeStatus{Acked: map[string]string{typ: "1.4"}}, Stale},
		{"first update pending", NodeStatus{Pending: map[string]string{typ: "1.5"}}, Stale},
		{"rejected current", NodeStatus{Acked: map[string]string{typ: "1.4"}, NACKed: map[string]string{typ: "1.5"}}, NACKed},
		{"rejected, newer pending", NodeStatus{NACKed: map[string]string{typ: "1.5"}, Pending: map[string]string{typ: "1.6"}}, NACKed},
		{"nothing", NodeStatus{}, NotSent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.n.Sync(typ, "1.5"); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
