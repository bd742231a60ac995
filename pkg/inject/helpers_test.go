package inject

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

var metaPod = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}

func objectMeta(name string, annotations map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "agents", Annotations: annotations}
}
