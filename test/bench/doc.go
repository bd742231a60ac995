// Package bench is the sidecar-pair benchmark behind `make bench`, and the small load generator it uses.
//
// The benchmark itself (pair_bench_test.go, build tag "bench") starts real processes on 127.0.0.1 — the sample
// tool, an egress+ingress sidecar pair per proof mode, and as baselines a direct call and a pair of bare
// httputil.ReverseProxy processes (cmd/bareproxy), plain and over mutual TLS — and prints, in one table, latency at a
// fixed request rate, closed-loop throughput and CPU per request read from /proc. Linux only (/proc, taskset):
//
//	go test -tags bench -run '^TestSidecarPair$' -count=1 -v ./test/bench
package bench
