//go:build !linux

package redirect

import "errors"

// TableName is the name of the tables the rules live in.
const TableName = "agentauth"

var errNotLinux = errors.New("redirect: netfilter rules are Linux only")

// Install is Linux only.
func Install(Rules) error { return errNotLinux }

// Remove is Linux only.
func Remove() error { return errNotLinux }

// Installed is Linux only.
func Installed() (bool, error) { return false, errNotLinux }
