// Package urlpath reads URL paths the way the servers behind the sidecar resolve them, so that what routing and
// policy match is what the server serves.
package urlpath

import "strings"

// WithoutParams returns p with each segment's ";params" dropped, as servlet containers (Tomcat, Jetty, Spring)
// do before resolving dot segments: "/orders/..;/admin" is "/orders/../admin" to them. p itself is returned, with
// no allocation, when it has no ';'.
func WithoutParams(p string) string {
	if strings.IndexByte(p, ';') < 0 {
		return p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if k := strings.IndexByte(s, ';'); k >= 0 {
			segs[i] = s[:k]
		}
	}
	return strings.Join(segs, "/")
}

// HasDotSegment reports whether p has a "." or ".." segment once its ";params" are dropped: a server resolves
// "/public/../private" outside "/public/".
func HasDotSegment(p string) bool {
	for seg := range strings.SplitSeq(WithoutParams(p), "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
