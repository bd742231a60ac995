//go:build !race

package ecdsasig

const raceEnabled = false
