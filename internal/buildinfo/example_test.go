package buildinfo_test

import (
	"fmt"

	"github.com/agentauth/agentauth/internal/buildinfo"
)

// Each binary's -version flag prints its name and the build it was made from.
func ExampleInfo_Line() {
	in := buildinfo.Info{Module: "github.com/agentauth/agentauth", Version: "v0.3.0", Revision: "4f2c9e1", GoVersion: "go1.26.8"}
	fmt.Println(in.Line("controller"))
	// Output: controller v0.3.0 (github.com/agentauth/agentauth, revision 4f2c9e1, go1.26.8)
}
