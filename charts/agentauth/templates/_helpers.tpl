{{/* The release's full name, at most 63 characters (a DNS label), used by every object. */}}
{{- define "agentauth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* A component's name: fullname-suffix, shortened so that it stays a DNS label. */}}
{{- define "agentauth.name" -}}
{{- printf "%s-%s" (include "agentauth.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix -}}
{{- end -}}

{{- define "agentauth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "agentauth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentauth
{{- end -}}

{{- define "agentauth.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "agentauth.serviceAccountName" -}}
{{- default (include "agentauth.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* An image reference: registry/repository/NAME:tag, or @digest when pinned. */}}
{{- define "agentauth.image" -}}
{{- $img := .root.Values.image -}}
{{- $repo := printf "%s/%s" $img.repository .name -}}
{{- if $img.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" $img.registry) $repo }}{{ end -}}
{{- if .digest -}}
{{ $repo }}@{{ .digest }}
{{- else -}}
{{ $repo }}:{{ default .root.Chart.AppVersion $img.tag }}
{{- end -}}
{{- end -}}

{{- define "agentauth.webhookName" -}}
{{- include "agentauth.name" (dict "root" . "suffix" "webhook") -}}
{{- end -}}

{{- define "agentauth.webhookCertSecret" -}}
{{- include "agentauth.name" (dict "root" . "suffix" "webhook-tls") -}}
{{- end -}}

{{- define "agentauth.tokenEndpoint" -}}
{{- $c := .Values.controller -}}
{{- default (printf "https://%s.%s.svc:%d/token" (include "agentauth.name" (dict "root" . "suffix" "token")) .Release.Namespace (int $c.ports.tokenService)) $c.tokenService.endpoint -}}
{{- end -}}

{{/* The controller's config file (pkg/controller.Config): listeners on every address of the pod, state in the
Kubernetes API (shared by the replicas, the Lease the Role names) or in the data volume, the admin socket in
/run/agentauth. */}}
{{- define "agentauth.controllerConfig" -}}
{{- $c := .Values.controller -}}
{{- $cfg := dict
  "trustDomain" .Values.trustDomain
  "dataDir" "/var/lib/agentauth/data"
  "issuer" (dict "listen" (printf ":%d" (int $c.ports.issuer)) "svidTTL" $c.svidTTL
    "kubernetes" (dict "audience" .Values.attestation.audience "spiffeIDTemplate" .Values.attestation.spiffeIDPath))
  "xds" (dict "listen" (printf ":%d" (int $c.ports.xds)))
  "ops" (dict "listen" (printf ":%d" (int $c.ports.ops)))
  "admin" (dict "socket" "/run/agentauth/admin.sock")
  "log" (dict "level" $c.logLevel)
-}}
{{- if eq $c.state.backend "kubernetes" -}}
{{- $_ := set $cfg "state" (dict "backend" "kubernetes" "kubernetes" (dict
  "namespace" .Release.Namespace
  "name" (include "agentauth.fullname" . | trunc 40 | trimSuffix "-")
  "leaseName" (include "agentauth.name" (dict "root" . "suffix" "leader")))) -}}
{{- else if ne $c.state.backend "bbolt" -}}
{{- fail "controller.state.backend must be kubernetes or bbolt" -}}
{{- else if gt (int $c.replicas) 1 -}}
{{- fail "controller.state.backend bbolt keeps the state in each pod: set controller.replicas to 1, or use kubernetes" -}}
{{- end -}}
{{- if eq $c.policy.source "crd" -}}
{{- $_ := set $cfg "policy" (dict "source" "crd") -}}
{{- else if ne $c.policy.source "admin" -}}
{{- fail "controller.policy.source must be crd or admin" -}}
{{- end -}}
{{- if $c.tokenService.enabled -}}
{{- $ts := dict "listen" (printf ":%d" (int $c.ports.tokenService)) "endpoint" (include "agentauth.tokenEndpoint" .) -}}
{{- with $c.tokenService.txnTokenTTL }}{{ $_ := set $ts "txnTokenTTL" . }}{{ end -}}
{{- with $c.tokenService.userIssuers }}{{ $_ := set $ts "userIssuers" . }}{{ end -}}
{{- with $c.tokenService.accessTokens }}{{ $_ := set $ts "accessTokens" . }}{{ end -}}
{{- $_ := set $cfg "tokenService" $ts -}}
{{- end -}}
{{- if $c.ssf.enabled -}}
{{- $ssf := dict "listen" (printf ":%d" (int $c.ports.ssf)) "transmitters" $c.ssf.transmitters -}}
{{- if $c.ssf.transmitterObjects }}{{ $_ := set $ssf "transmitterObjects" (dict "namespace" .Release.Namespace) }}{{ end -}}
{{- $_ := set $cfg "ssf" $ssf -}}
{{- end -}}
{{- if $c.audit.enabled -}}
{{- $a := dict "dir" "/var/lib/agentauth/audit" "durability" $c.audit.durability -}}
{{- with $c.audit.maxFileBytes }}{{ $_ := set $a "maxFileBytes" (int64 .) }}{{ end -}}
{{- with $c.audit.checkpointInterval }}{{ $_ := set $a "checkpointInterval" . }}{{ end -}}
{{- $_ := set $cfg "audit" $a -}}
{{- end -}}
{{- if .Values.injector.enabled -}}
{{- $_ := set $cfg "webhook" (include "agentauth.webhookConfig" . | fromYaml) -}}
{{- end -}}
{{- toYaml (mergeOverwrite $cfg (deepCopy $c.extraConfig)) -}}
{{- end -}}

{{/* The controller's webhook section: the injector's serving certificate and what it puts into pods. */}}
{{- define "agentauth.webhookConfig" -}}
{{- $inj := .Values.injector -}}
{{- $s := $inj.sidecar -}}
{{- $svc := printf "%s.%s.svc" (include "agentauth.webhookName" .) .Release.Namespace -}}
{{- $w := dict "listen" (printf ":%d" (int .Values.controller.ports.webhook)) -}}
{{- if $inj.certManager.enabled -}}
{{- $_ := set $w "certManager" (dict "cert" "/etc/agentauth/webhook-tls/tls.crt" "key" "/etc/agentauth/webhook-tls/tls.key") -}}
{{- else -}}
{{- $_ := set $w "dnsNames" (list $svc (printf "%s.cluster.local" $svc)) -}}
{{- $b := dict "webhookConfiguration" (include "agentauth.webhookName" .) -}}
{{- if eq .Values.controller.policy.source "crd" }}{{ $_ := set $b "validatingWebhookConfiguration" (include "agentauth.webhookName" .) }}{{ end -}}
{{- $_ := set $w "caBundle" $b -}}
{{- end -}}
{{- $injection := dict
  "image" (include "agentauth.image" (dict "root" . "name" "sidecar" "digest" .Values.image.sidecarDigest))
  "imagePullPolicy" .Values.image.pullPolicy
  "uid" (int $s.uid)
  "mode" $s.mode
  "resources" $s.resources
  "audience" .Values.attestation.audience
  "tokenExpirationSeconds" (int $s.tokenExpirationSeconds)
  "controller" (dict "address" (printf "%s.%s.svc:%d" (include "agentauth.name" (dict "root" . "suffix" "xds")) .Release.Namespace (int .Values.controller.ports.xds)))
-}}
{{- with $s.excludeOutboundPorts }}{{ $_ := set $injection "excludeOutboundPorts" . }}{{ end -}}
{{- with $s.excludeOutboundCIDRs }}{{ $_ := set $injection "excludeOutboundCIDRs" . }}{{ end -}}
{{- with $s.routes }}{{ $_ := set $injection "routes" . }}{{ end -}}
{{- if .Values.spire.enabled -}}
{{- $_ := set $injection "identity" (dict "workloadAPI" (dict "socket" (printf "unix://%s" .Values.spire.socketPath))) -}}
{{- $spire := dict "socketDir" (dir .Values.spire.socketPath) -}}
{{- if .Values.spire.hostPath }}{{ $_ := set $spire "hostPath" .Values.spire.hostPath }}{{ else }}{{ $_ := set $spire "csiDriver" .Values.spire.csiDriver }}{{ end -}}
{{- $_ := set $injection "spire" $spire -}}
{{- else -}}
{{- $_ := set $injection "identity" (dict "controller" (dict
  "address" (printf "%s.%s.svc:%d" (include "agentauth.name" (dict "root" . "suffix" "issuer")) .Release.Namespace (int .Values.controller.ports.issuer))
  "bundle" "/var/run/agentauth/identity/bundle.pem"
  "kubernetesTokenFile" "/var/run/agentauth/identity/token"
  "stateDir" "/var/run/agentauth/state")) -}}
{{- end -}}
{{- $_ := set $w "injection" $injection -}}
{{- toYaml $w -}}
{{- end -}}
