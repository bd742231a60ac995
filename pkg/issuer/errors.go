package issuer

import (
	"errors"
)

// ErrNotFound is what a Store returns when it holds no record under the key asked for.
var ErrNotFound = errors.New("issuer: not found")
