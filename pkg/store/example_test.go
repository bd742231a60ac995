package store_test

import (
	"fmt"
	"os"
	"path/filepath"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/store"
)

func Example() {
	dir, _ := os.MkdirTemp("", "store-example")
	defer os.RemoveAll(dir)
	st, err := store.Open(filepath.Join(dir, "controller.db"), store.Options{})
	if err != nil {
		panic(err)
	}
	defer st.Close()
	cancel := st.Subscribe(func(cs []store.Change) { fmt.Println("changed:", cs[0].Bucket, cs[0].Key) })
	defer cancel()

	// Durable (fsync'd) when Put returns.
	version, _ := st.Revocations().Put(&agentauthv1.Revocation{
		Id:      "r1",
		Subject: &agentauthv1.Subject{Kind: "spiffe", Value: "spiffe://example.org/agent/a"},
	})
	fmt.Println("version", version)
	// Output:
	// changed: revocations r1
	// version 1
}
