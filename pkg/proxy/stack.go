package proxy

// HTTP/2 runs every request on a new goroutine, whose stack starts at the runtime's minimum (2 KiB unless the
// average goroutine is bigger). The ingress path — JOSE parsing, signature verification, policy — needs ~16 KiB,
// which the runtime reaches by doubling three times at ever deeper points, copying and re-walking the whole stack
// each time: a tenth of the ingress sidecar's CPU per request in the pair benchmark's profiles. growStack takes the
// whole size in one step while the stack is shallow, so the copy is short. On a goroutine that already has the
// space (HTTP/1.1 keep-alive connections reuse theirs) it costs only clearing the frame. CockroachDB's growstack
// package does the same for its request paths.

// growStackFrame is chosen so the first doubling that fits it yields a 16 KiB stack.
const growStackFrame = 10 << 10

//go:noinline
func growStack() {
	var buf [growStackFrame]byte
	keepFrame(buf[:])
}

// keepFrame keeps buf alive so the compiler cannot drop the frame.
//
//go:noinline
func keepFrame(b []byte) { _ = b[len(b)-1] }
