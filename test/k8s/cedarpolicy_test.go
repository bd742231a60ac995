package k8s

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/agentauth/agentauth/internal/testproc"
	"github.com/agentauth/agentauth/pkg/crd"
)

// Policies of TestCedarPolicyCRD, each a CedarPolicy.
const (
	plannerPolicy = `@id("planner-may-call-weather")
permit (principal == Agent::"` + agentPlanner + `", action, resource == Tool::"weather.tools.local");
`
	scoutPolicy = `@id("scout-may-call-weather")
permit (principal == Agent::"` + agentScout + `", action, resource == Tool::"weather.tools.local");
`
	// brokenPolicy has a syntax error on its line 2 (a missing comma).
	brokenPolicy = `@id("broken")
permit (principal, action resource);
`
)

// TestCedarPolicyCRD: a controller with policy.source crd, and the chart's ValidatingWebhookConfiguration pointed
// at its webhook server (the controller keeps its caBundle). A CedarPolicy that does not compile is refused at
// create with its line; a good one becomes the live set, reaches the sidecars over xDS and is Accepted; editing
// and deleting change what the sidecars allow; the admin API's policy apply is refused; an object that bypassed
// admission is Accepted=False and the sidecars keep the last good set.
func TestCedarPolicyCRD(t *testing.T) {
	_, r := installChart(t)
	env := newReplicaEnv(t, "agentauth-cedarpolicy")
	ctx := context.Background()
	dyn := newApplier(t, env.srv).dyn
	policies := dyn.Resource(crd.CedarPolicies)
	for _, name := range []string{"planner", "scout", "broken", "late"} {
		t.Cleanup(func() { _ = policies.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}

	// The chart's webhook configuration, without a caBundle (the controller writes it), at the controller's URL.
	webhookAddr := testproc.FreeAddr(t)
	if r.validate == nil {
		t.Fatal("the chart renders no ValidatingWebhookConfiguration")
	}
	vwc := r.validate.DeepCopy()
	vwc.Name = "agentauth-cedarpolicy-test"
	cc := &vwc.Webhooks[0].ClientConfig
	_, port, _ := strings.Cut(webhookAddr, ":")
	url := "https://localhost:" + port + *cc.Service.Path
	cc.URL, cc.Service = &url, nil
	vwcAPI := env.srv.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := vwcAPI.Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vwcAPI.Delete(context.Background(), vwc.Name, metav1.DeleteOptions{}) })

	env.extraConfig = fmt.Sprintf(`policy: {source: crd, kubeconfig: %s}
webhook:
  listen: %s
  dnsNames: [localhost]
  caBundle: {webhookConfiguration: agentauth-cedarpolicy-test-none, validatingWebhookConfiguration: %s, kubeconfig: %s}
  injection:
    image: agentauth/sidecar:test
    identity: {controller: {address: "localhost:1", bundle: /var/run/agentauth/identity/bundle.pem, kubernetesTokenFile: /var/run/agentauth/identity/token, stateDir: /var/run/agentauth/state}}
    controller: {address: "localhost:1"}
`, env.kubeconfig, webhookAddr, vwc.Name, env.kubeconfig)
	c := env.startReplica(t, "controller")
	env.waitLeader(t, "controller")

	testproc.WaitFor(t, c.proc, "the controller to write the caBundle", 100*time.Millisecond, func() (bool, string) {
		got, err := vwcAPI.Get(ctx, vwc.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		bundle, err := os.ReadFile(c.bundle())
		return err == nil && bytes.Equal(got.Webhooks[0].ClientConfig.CABundle, bundle), "caBundle not the controller's CA"
	})

	// Refused at create, with the object's name and the line.
	_, err := policies.Create(ctx, newCedarPolicy("broken", brokenPolicy), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `CedarPolicy "broken" does not compile`) || !strings.Contains(err.Error(), "line 2, column") {
		t.Fatalf("create of a policy that does not compile: %v; want a refusal naming it and its line", err)
	}
	t.Logf("refused at admission: %v", err)

	// Accepted, live, enforced by the sidecars.
	createWhenEstablished(t, dyn, newCedarPolicy("planner", plannerPolicy))
	waitAccepted(t, c.proc, policies, "planner", metav1.ConditionTrue, "Compiled")
	m := startMesh(t, c, c, agentPlanner, agentScout)
	m.waitCall(t, agentPlanner, "the planner allowed", func(code int, _ string) bool { return code == http.StatusOK })
	m.waitCall(t, agentScout, "the scout refused by policy", func(code int, _ string) bool { return code == http.StatusForbidden })

	// A second policy id clash is refused at admission too.
	_, err = policies.Create(ctx, newCedarPolicy("late", plannerPolicy), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `policy id "planner-may-call-weather" is already used by CedarPolicy "planner"`) {
		t.Fatalf("create of a policy whose id another uses: %v", err)
	}

	// Edited: the planner's permit now names the scout.
	edit(t, policies, "planner", strings.ReplaceAll(plannerPolicy, agentPlanner, agentScout))
	m.waitCall(t, agentScout, "the scout allowed after the edit", func(code int, _ string) bool { return code == http.StatusOK })
	m.waitCall(t, agentPlanner, "the planner refused after the edit", func(code int, _ string) bool { return code == http.StatusForbidden })

	// The admin API refuses to replace the set.
	out, err := exec.Command(binary(t, "agentauthctl"), "--socket", c.socket, "policy", "apply",
		writeTestFile(t, t.TempDir(), "agents.cedar", anyAgentPolicy)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "kubectl apply") {
		t.Fatalf("agentauthctl policy apply with policy.source crd: %v\n%s", err, out)
	}

	// Past admission (the webhook is gone): the broken object is Accepted=False with its line, a good object
	// created meanwhile waits (NotApplied), and the sidecars keep the last good set.
	if err := vwcAPI.Delete(ctx, vwc.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testproc.WaitFor(t, c.proc, "a CedarPolicy that does not compile to be stored", 100*time.Millisecond, func() (bool, string) {
		_, err := policies.Create(ctx, newCedarPolicy("broken", brokenPolicy), metav1.CreateOptions{})
		return err == nil, fmt.Sprint(err)
	})
	broken := waitAccepted(t, c.proc, policies, "broken", metav1.ConditionFalse, "Invalid")
	if !strings.Contains(broken.Message, "line 2, column") {
		t.Errorf("Invalid without the line: %q", broken.Message)
	}
	createWhenEstablished(t, dyn, newCedarPolicy("late", strings.ReplaceAll(scoutPolicy, "scout-may", "late-scout-may")))
	late := waitAccepted(t, c.proc, policies, "late", metav1.ConditionFalse, "NotApplied")
	if !strings.Contains(late.Message, "broken") {
		t.Errorf("NotApplied does not name the object at fault: %q", late.Message)
	}
	if got := acceptedOf(t, dyn, "planner"); got.Status != metav1.ConditionTrue {
		t.Errorf("the planner policy, still live: %+v", got)
	}
	edit(t, policies, "planner", plannerPolicy) // would allow the planner again, were the set applied
	waitAccepted(t, c.proc, policies, "planner", metav1.ConditionFalse, "NotApplied")
	if code, body := m.call(t, agentScout); code != http.StatusOK {
		t.Fatalf("the last good set is not served: the scout %d %s", code, body)
	}
	if code, _ := m.call(t, agentPlanner); code != http.StatusForbidden {
		t.Fatalf("a set that does not compile was applied: the planner %d", code)
	}

	// Deleted, the broken object no longer holds the set back.
	if err := policies.Delete(ctx, "broken", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAccepted(t, c.proc, policies, "late", metav1.ConditionTrue, "Compiled")
	waitAccepted(t, c.proc, policies, "planner", metav1.ConditionTrue, "Compiled")
	m.waitCall(t, agentPlanner, "the planner allowed once the set compiles", func(code int, _ string) bool { return code == http.StatusOK })

	// Deleting the planner's policy takes its permit out of the set.
	if err := policies.Delete(ctx, "planner", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	m.waitCall(t, agentPlanner, "the planner refused once its policy is deleted", func(code int, _ string) bool { return code == http.StatusForbidden })
	if code, body := m.call(t, agentScout); code != http.StatusOK {
		t.Fatalf("the scout, allowed by the late policy: %d %s", code, body)
	}
}

// edit replaces the Cedar text of the named CedarPolicy.
func edit(t *testing.T, policies dynamic.ResourceInterface, name, cedar string) {
	t.Helper()
	obj, err := policies.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(obj.Object, cedar, "spec", "cedar"); err != nil {
		t.Fatal(err)
	}
	if _, err := policies.Update(context.Background(), obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitAccepted waits until the named CedarPolicy's Accepted condition has status and reason for its current
// generation, and returns it.
func waitAccepted(t *testing.T, p *testproc.Proc, policies dynamic.ResourceInterface, name string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	testproc.WaitFor(t, p, fmt.Sprintf("CedarPolicy %s Accepted=%s (%s)", name, status, reason), 100*time.Millisecond, func() (bool, string) {
		obj, err := policies.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		var cp crd.CedarPolicy
		if err := crd.Decode(obj, &cp); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(cp.Status.Conditions, crd.ConditionAccepted)
		if c == nil {
			return false, "no Accepted condition"
		}
		got = *c
		return c.Status == status && c.Reason == reason && c.ObservedGeneration == cp.Generation &&
			cp.Status.ObservedGeneration == cp.Generation, fmt.Sprintf("%+v", *c)
	})
	return got
}
