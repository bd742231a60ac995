{{/* Pieces of the CRDs' schemas (crds.yaml). */}}
{{- define "agentauth.crdStatus" -}}
status:
  type: object
  description: What the controller made of this object.
  properties:
    observedGeneration:
      type: integer
      format: int64
    conditions:
      type: array
      description: Accepted is True once the controller uses the object; False with the reason and message otherwise.
      x-kubernetes-list-type: map
      x-kubernetes-list-map-keys: [type]
      items:
        type: object
        required: [type, status, lastTransitionTime, reason, message]
        properties:
          type: {type: string, maxLength: 316}
          status: {type: string, enum: ["True", "False", "Unknown"]}
          observedGeneration: {type: integer, format: int64, minimum: 0}
          lastTransitionTime: {type: string, format: date-time}
          reason: {type: string, maxLength: 1024}
          message: {type: string, maxLength: 32768}
{{- end }}
{{- define "agentauth.secretKeyRef" -}}
type: object
description: {{ .doc }} A key of a Secret in the controller's namespace, re-read when the Secret changes.
required: [name, key]
properties:
  name: {type: string, minLength: 1, maxLength: 253}
  key: {type: string, minLength: 1, maxLength: 253}
{{- end }}
