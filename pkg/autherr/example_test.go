package autherr_test

import (
	"errors"
	"fmt"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// A check fails with a message that says what was wrong; the reason code and status come from the sentinel.
func Example() {
	err := fmt.Errorf("wpt: %w: aud %q is not one of [https://weather.example/forecast]", autherr.ErrWrongAudience,
		"https://other.example/")
	fmt.Println(autherr.Code(err), autherr.HTTPStatus(err), errors.Is(err, autherr.ErrWrongAudience))
	// Output: wrong_audience 400 true
}
