//go:build race

package ecdsasig

// raceEnabled: the race detector's instrumentation moves values to the heap, so allocation counts do not hold.
const raceEnabled = true
