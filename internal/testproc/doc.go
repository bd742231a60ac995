// Package testproc runs the project's binaries as real processes for the end-to-end suites (test/e2e, test/netns,
// test/bench). It builds them once into a temporary directory, starts them with their output captured, stops them
// with SIGTERM (and SIGKILL after a grace period) when the test ends, logs their output when the test failed, and
// waits for them to become ready. It is test support: it reports through testing.TB rather than returning errors.
package testproc
