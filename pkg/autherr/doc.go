// Package autherr names the reasons a request is refused.
//
// Every check in agentauth (token and signature verification, replay, revocation, policy) fails with an error that
// wraps exactly one of the sentinels here. The sentinel's text is the reason code, so one string reaches the JSON
// error body, the metric label and the audit record without drift; HTTPStatus maps it to the documented status.
package autherr
