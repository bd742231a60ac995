package k8s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/agentauth/agentauth/internal/testproc"
	"github.com/agentauth/agentauth/pkg/crd"
)

// createWhenEstablishedAs creates obj as a res, retrying while the API server does not serve its kind yet (a CRD
// just applied).
func createWhenEstablishedAs(t *testing.T, dyn dynamic.Interface, res schema.GroupVersionResource, obj *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := dyn.Resource(res).Create(context.Background(), obj, metav1.CreateOptions{})
		if err == nil {
			return out
		}
		if !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			t.Fatalf("creating %s %s: %v", res.Resource, obj.GetName(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newSSFTransmitter is an SSFTransmitter object for the dynamic client whose keys are in the Secret secret, key
// jwks.json.
func newSSFTransmitter(name, issuer, secret string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": crd.Group + "/" + crd.Version, "kind": "SSFTransmitter",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{"issuer": issuer, "audience": []any{ssfAudience},
			"jwksSecretRef": map[string]any{"name": secret, "key": "jwks.json"}},
	}}
}

// transmitterAccepted returns the Accepted condition of the named SSFTransmitter, nil while it has none.
func transmitterAccepted(t *testing.T, dyn dynamic.Interface, name string) *metav1.Condition {
	t.Helper()
	obj, err := dyn.Resource(crd.SSFTransmitters).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var o crd.SSFTransmitter
	if err := crd.Decode(obj, &o); err != nil {
		t.Fatal(err)
	}
	c := meta.FindStatusCondition(o.Status.Conditions, crd.ConditionAccepted)
	if c == nil || c.ObservedGeneration != o.Generation {
		return nil
	}
	return c
}

// waitTransmitterAccepted waits until the named SSFTransmitter's Accepted condition has status and reason.
func waitTransmitterAccepted(t *testing.T, p *testproc.Proc, dyn dynamic.Interface, name string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var c *metav1.Condition
	testproc.WaitFor(t, p, fmt.Sprintf("SSFTransmitter %s Accepted=%s %s", name, status, reason), 100*time.Millisecond, func() (bool, string) {
		c = transmitterAccepted(t, dyn, name)
		if c == nil {
			return false, "no Accepted condition"
		}
		return c.Status == status && c.Reason == reason, fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
	})
	return c
}

// jwksSecret is a Secret of namespace holding the public JWK Set of key at jwks.json.
func jwksSecret(t *testing.T, namespace, name string, key jose.JSONWebKey) *corev1.Secret {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Data: map[string][]byte{"jwks.json": b}}
}

// TestSSFTransmitterObjects: a controller with ssf.transmitterObjects and no ssf.transmitters trusts the
// transmitter of an SSFTransmitter object whose keys are in a Secret: a SET it signs is accepted and its
// revocation applied; a new key in the Secret is trusted without a restart; a bad object is Accepted=False with
// the reason; once the object is deleted the next SET is refused.
func TestSSFTransmitterObjects(t *testing.T) {
	srv, _ := installChart(t)
	env := newReplicaEnv(t, "agentauth-ssf-objects")
	env.ssf = "  transmitterObjects: {}"
	dyn := newApplier(t, srv).dyn
	ctx := context.Background()
	secrets := srv.Client.CoreV1().Secrets(env.namespace)
	if _, err := secrets.Create(ctx, jwksSecret(t, env.namespace, "idp-keys", env.idpKey), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("ssf-%d-", time.Now().UnixNano())
	name, conflict, missing := prefix+"idp", prefix+"idp-again", prefix+"missing"
	obj := createWhenEstablishedAs(t, dyn, crd.SSFTransmitters, newSSFTransmitter(name, idpIssuer, "idp-keys"))
	t.Cleanup(func() {
		for _, n := range []string{name, conflict, missing} {
			_ = dyn.Resource(crd.SSFTransmitters).Delete(ctx, n, metav1.DeleteOptions{})
		}
	})

	r := env.startReplica(t, "ssf-objects-0")
	env.waitLeader(t, r.name)
	c := waitTransmitterAccepted(t, r.proc, dyn, obj.GetName(), metav1.ConditionTrue, "Configured")
	t.Logf("Accepted: %s %s", c.Reason, c.Message)

	agent := "spiffe://" + replicaTrustDomain + "/agent/ssf-objects"
	event, sub, members := compromise(agent)
	if code := env.push(t, r, prefix+"1", event, sub, members); code != http.StatusAccepted {
		t.Fatalf("SET of the object's transmitter: %d", code)
	}
	if out := r.ctl(t, "revocations", "-o", "json"); !strings.Contains(out, prefix+"1") {
		t.Fatalf("the SET's revocation is not listed: %s", out)
	}

	// Key rotation through the Secret: SETs signed with the new key verify once the controller saw it.
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	env.idpKey = jose.JSONWebKey{Key: priv, KeyID: "idp-2", Algorithm: string(jose.ES256), Use: "sig"}
	if _, err := secrets.Update(ctx, jwksSecret(t, env.namespace, "idp-keys", env.idpKey), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	n := 0
	testproc.WaitFor(t, r.proc, "a SET signed with the rotated key to be accepted", 200*time.Millisecond, func() (bool, string) {
		n++
		code := env.push(t, r, fmt.Sprintf("%srotated-%d", prefix, n), event, sub, members)
		return code == http.StatusAccepted, fmt.Sprint(code)
	})

	// Bad objects: one naming a Secret that does not exist, one naming the issuer the older object has.
	createWhenEstablishedAs(t, dyn, crd.SSFTransmitters, newSSFTransmitter(missing, "https://other.example.com", "no-such-secret"))
	c = waitTransmitterAccepted(t, r.proc, dyn, missing, metav1.ConditionFalse, "SecretNotFound")
	if !strings.Contains(c.Message, "no-such-secret") {
		t.Errorf("message does not name the Secret: %q", c.Message)
	}
	createWhenEstablishedAs(t, dyn, crd.SSFTransmitters, newSSFTransmitter(conflict, idpIssuer, "idp-keys"))
	c = waitTransmitterAccepted(t, r.proc, dyn, conflict, metav1.ConditionFalse, "IssuerConflict")
	if !strings.Contains(c.Message, name) {
		t.Errorf("message does not name the object holding the issuer: %q", c.Message)
	}
	// The missing Secret appears: the object is accepted.
	if _, err := secrets.Create(ctx, jwksSecret(t, env.namespace, "no-such-secret", env.idpKey), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitTransmitterAccepted(t, r.proc, dyn, missing, metav1.ConditionTrue, "Configured")

	// Deleted, the transmitter is trusted no more.
	for _, n := range []string{conflict, name} {
		if err := dyn.Resource(crd.SSFTransmitters).Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testproc.WaitFor(t, r.proc, "a SET of the deleted object's transmitter to be refused", 200*time.Millisecond, func() (bool, string) {
		n++
		code := env.push(t, r, fmt.Sprintf("%sdeleted-%d", prefix, n), event, sub, members)
		return code == http.StatusBadRequest, fmt.Sprint(code)
	})
}
