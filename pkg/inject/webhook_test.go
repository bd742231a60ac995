package inject

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"go.uber.org/zap"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// post sends pod as the API server would on CREATE and returns the answer.
func post(t *testing.T, srv *httptest.Server, path string, pod *corev1.Pod) (*admissionv1.AdmissionResponse, []byte) {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	rev := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "req-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: "agents",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}},
	}
	body, _ := json.Marshal(rev)
	resp, err := http.Post(srv.URL+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil || out.Response.UID != "req-1" || out.Kind != "AdmissionReview" {
		t.Fatalf("answer %+v: want a response to request req-1", out)
	}
	return out.Response, raw
}

func TestWebhook(t *testing.T) {
	srv := httptest.NewServer(Handler(newTestInjector(t), zap.NewNop()))
	defer srv.Close()

	t.Run("injects with a JSON patch that gives the golden pod", func(t *testing.T) {
		pod := testPod(map[string]string{AnnotationMode: "wpt", AnnotationRoutes: routesWPT})
		resp, raw := post(t, srv, PathNamespace, pod)
		if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("response %+v: want allowed with a JSON patch", resp)
		}
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatal(err)
		}
		patched, err := p.Apply(raw)
		if err != nil {
			t.Fatal(err)
		}
		var got corev1.Pod
		if err := json.Unmarshal(patched, &got); err != nil {
			t.Fatal(err)
		}
		y, _ := yaml.Marshal(&got)
		checkGolden(t, "testdata/mode-wpt-routes.golden.yaml", y)

		// The API server may call again (reinvocationPolicy IfNeeded): the injected pod gets no patch.
		again, _ := post(t, srv, PathNamespace, &got)
		if !again.Allowed || len(again.Patch) != 0 {
			t.Errorf("re-injection: %+v, want allowed without a patch", again)
		}
	})

	t.Run("refuses a bad annotation, naming it", func(t *testing.T) {
		resp, _ := post(t, srv, PathNamespace, testPod(map[string]string{AnnotationMode: "bearer"}))
		if resp.Allowed || resp.Result == nil || resp.Result.Code != 400 ||
			!strings.Contains(resp.Result.Message, "annotation agentauth.io/mode: \"bearer\"") {
			t.Errorf("response %+v, want a 400 refusal naming agentauth.io/mode", resp.Result)
		}
	})

	t.Run("pod path leaves pods that did not ask alone", func(t *testing.T) {
		resp, _ := post(t, srv, PathPod, testPod(nil))
		if !resp.Allowed || len(resp.Patch) != 0 {
			t.Errorf("response %+v, want allowed unchanged", resp)
		}
		resp, _ = post(t, srv, PathPod, testPod(map[string]string{AnnotationInject: "true"}))
		if !resp.Allowed || len(resp.Patch) == 0 {
			t.Errorf("response %+v, want the pod that asked injected", resp)
		}
	})

	t.Run("refuses what is not an AdmissionReview", func(t *testing.T) {
		for _, tc := range []struct {
			ct, body string
			want     int
		}{
			{"text/plain", "{}", http.StatusUnsupportedMediaType},
			{"application/json", "{", http.StatusBadRequest},
			{"application/json", `{"kind":"AdmissionReview"}`, http.StatusBadRequest},
		} {
			resp, err := http.Post(srv.URL+PathNamespace, tc.ct, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s %q: status %d, want %d", tc.ct, tc.body, resp.StatusCode, tc.want)
			}
		}
	})
}
