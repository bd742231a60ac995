package crd_test

import (
	"fmt"

	"github.com/agentauth/agentauth/pkg/crd"
)

// Accepted computes the status to write: the condition's lastTransitionTime moves only when its status flips,
// and an unchanged status needs no write (StatusWriter.SetAccepted skips it).
func ExampleAccepted() {
	st, changed := crd.Accepted(crd.Status{}, 1, false, "Invalid", "line 2, column 35: syntax error")
	fmt.Println(changed, st.Conditions[0].Type, st.Conditions[0].Status, st.Conditions[0].Reason)
	_, changed = crd.Accepted(st, 1, false, "Invalid", "line 2, column 35: syntax error")
	fmt.Println(changed)
	// Output:
	// true Accepted False Invalid
	// false
}
