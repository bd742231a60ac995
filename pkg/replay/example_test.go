package replay_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/replay"
)

func Example() {
	cache := replay.New(replay.Options{MaxEntries: 100000})
	// Remember a proof's jti, scoped by its sender, until its exp plus the allowed clock skew.
	id := "spiffe://example.org/agent" + "\x00" + "jti-1"
	until := time.Now().Add(5*time.Minute + 30*time.Second)

	fmt.Println(cache.Check(id, until))
	err := cache.Check(id, until)
	fmt.Println(errors.Is(err, autherr.ErrReplay))
	// Output:
	// <nil>
	// true
}
