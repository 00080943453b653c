{{/* vim: set filetype=mustache: */}}
{{/*
Naming and labels. This file is the naming contract of the chart: selectors use only
name, instance and component, so they never change across upgrades (selectors are immutable).
*/}}

{{/* Chart name, overridable. */}}
{{- define "shotgun-cache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, truncated at 63 characters because some Kubernetes name fields are
limited to this (DNS naming spec). If the release name contains the chart name it is used as is.
*/}}
{{- define "shotgun-cache.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Component names: <fullname>-syncer, <fullname>-query-server (suffix kept within 63). */}}
{{- define "shotgun-cache.syncer.fullname" -}}
{{- printf "%s-syncer" (include "shotgun-cache.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}
{{- define "shotgun-cache.queryServer.fullname" -}}
{{- printf "%s-query-server" (include "shotgun-cache.fullname" . | trunc 50 | trimSuffix "-") }}
{{- end }}
{{- define "shotgun-cache.queryServer.headlessName" -}}
{{- printf "%s-query-server-headless" (include "shotgun-cache.fullname" . | trunc 41 | trimSuffix "-") }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label (never in a selector). */}}
{{- define "shotgun-cache.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels. Call with (dict "ctx" $ "component" "syncer"); component may be empty.
*/}}
{{- define "shotgun-cache.labels" -}}
{{- $ctx := .ctx -}}
helm.sh/chart: {{ include "shotgun-cache.chart" $ctx }}
{{ include "shotgun-cache.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: shotgun-cache
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: name, instance and (when given) component. Stable across upgrades.
Call with (dict "ctx" $ "component" "syncer").
*/}}
{{- define "shotgun-cache.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shotgun-cache.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* Service account name. */}}
{{- define "shotgun-cache.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shotgun-cache.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: repository:tag (tag defaults to appVersion) or repository@digest. */}}
{{- define "shotgun-cache.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the Secret the chart creates for inline secret values. */}}
{{- define "shotgun-cache.secretName" -}}
{{- include "shotgun-cache.fullname" . }}
{{- end }}

{{/* Name of the ConfigMap holding config.toml. */}}
{{- define "shotgun-cache.configMapName" -}}
{{- printf "%s-config" (include "shotgun-cache.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/* Name of the PVC for the embedded SQLite store. */}}
{{- define "shotgun-cache.pvcName" -}}
{{- if .Values.store.sqlite.persistence.existingClaim }}
{{- .Values.store.sqlite.persistence.existingClaim }}
{{- else }}
{{- printf "%s-data" (include "shotgun-cache.fullname" . | trunc 58 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/*
The secrets the services use. Each entry: the value supplied inline (if any), the existing Secret
(if any), and where it ends up. Returns YAML: a map from a short id to
  {env, secretName, secretKey, file, inline}
holding only the secrets that are configured. "inline" is set when the chart's own Secret holds it.
*/}}
{{- define "shotgun-cache.secrets" -}}
{{- $own := include "shotgun-cache.secretName" . -}}
{{- $v := .Values -}}
{{- $out := dict -}}
{{- /* Shotgun script key */ -}}
{{- if $v.shotgun.existingSecret }}
{{- $_ := set $out "scriptKey" (dict "env" "SHOTGUN_CACHE_SITE__SCRIPT_KEY" "secretName" $v.shotgun.existingSecret "secretKey" $v.shotgun.existingSecretKey "file" "script-key") }}
{{- else if $v.shotgun.scriptKey }}
{{- $_ := set $out "scriptKey" (dict "env" "SHOTGUN_CACHE_SITE__SCRIPT_KEY" "secretName" $own "secretKey" "script-key" "file" "script-key" "inline" $v.shotgun.scriptKey) }}
{{- end }}
{{- /* RethinkDB password (only with the RethinkDB backend) */ -}}
{{- if eq $v.store.backend "rethinkdb" }}
{{- if $v.store.rethinkdb.existingSecret }}
{{- $_ := set $out "rethinkdbPassword" (dict "env" "SHOTGUN_CACHE_STORE__RETHINKDB_PASSWORD" "secretName" $v.store.rethinkdb.existingSecret "secretKey" $v.store.rethinkdb.existingSecretKey "file" "rethinkdb-password") }}
{{- else if $v.store.rethinkdb.password }}
{{- $_ := set $out "rethinkdbPassword" (dict "env" "SHOTGUN_CACHE_STORE__RETHINKDB_PASSWORD" "secretName" $own "secretKey" "rethinkdb-password" "file" "rethinkdb-password" "inline" $v.store.rethinkdb.password) }}
{{- end }}
{{- end }}
{{- /* gRPC bearer tokens: comma-separated in the env variable, one per line in the file */ -}}
{{- if $v.auth.existingSecret }}
{{- $_ := set $out "authTokens" (dict "env" "SHOTGUN_CACHE_AUTH__TOKENS" "secretName" $v.auth.existingSecret "secretKey" $v.auth.existingSecretKey "file" "auth-tokens") }}
{{- else if $v.auth.tokens }}
{{- $sep := ternary "\n" "," (eq $v.secretDelivery "file") }}
{{- $_ := set $out "authTokens" (dict "env" "SHOTGUN_CACHE_AUTH__TOKENS" "secretName" $own "secretKey" "auth-tokens" "file" "auth-tokens" "inline" (join $sep $v.auth.tokens)) }}
{{- end }}
{{- /* webhook HMAC secret (syncer) */ -}}
{{- if $v.syncer.webhook.existingSecret }}
{{- $_ := set $out "webhookSecret" (dict "env" "SHOTGUN_CACHE_SYNCER__WEBHOOK_SECRET" "secretName" $v.syncer.webhook.existingSecret "secretKey" $v.syncer.webhook.existingSecretKey "file" "webhook-secret") }}
{{- else if $v.syncer.webhook.secret }}
{{- $_ := set $out "webhookSecret" (dict "env" "SHOTGUN_CACHE_SYNCER__WEBHOOK_SECRET" "secretName" $own "secretKey" "webhook-secret" "file" "webhook-secret" "inline" $v.syncer.webhook.secret) }}
{{- end }}
{{- /* api3 client keys (query-server): name:key pairs, comma-separated */ -}}
{{- if $v.api3.existingSecret }}
{{- $_ := set $out "api3Clients" (dict "env" "SHOTGUN_CACHE_API3__CLIENTS" "secretName" $v.api3.existingSecret "secretKey" $v.api3.existingSecretKey "file" "api3-clients") }}
{{- else if $v.api3.clients }}
{{- $pairs := list }}
{{- range $v.api3.clients }}
{{- $pairs = append $pairs (printf "%s:%s" .name .key) }}
{{- end }}
{{- $_ := set $out "api3Clients" (dict "env" "SHOTGUN_CACHE_API3__CLIENTS" "secretName" $own "secretKey" "api3-clients" "file" "api3-clients" "inline" (join "," $pairs)) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
Which secrets each component receives (ids from shotgun-cache.secrets).
The query-server gets the script key only when it forwards api3 calls to the site.
*/}}
{{- define "shotgun-cache.componentSecretIds" -}}
{{- if eq .component "syncer" -}}
scriptKey,rethinkdbPassword,authTokens,webhookSecret
{{- else -}}
{{- if .ctx.Values.api3.forward }}scriptKey,{{ end }}rethinkdbPassword,authTokens,api3Clients
{{- end }}
{{- end }}

{{/*
Secret environment for a component: env vars from secretKeyRef (secretDelivery=env) or the
*_FILE variants pointing at the projected secrets volume (secretDelivery=file).
Call with (dict "ctx" $ "component" "syncer").
*/}}
{{- define "shotgun-cache.secretEnv" -}}
{{- $secrets := include "shotgun-cache.secrets" .ctx | fromYaml -}}
{{- $ids := splitList "," (include "shotgun-cache.componentSecretIds" .) -}}
{{- range $id := $ids }}
{{- with (get $secrets $id) }}
{{- if eq $.ctx.Values.secretDelivery "file" }}
- name: {{ .env }}_FILE
  value: /etc/shotgun-cache/secrets/{{ .file }}
{{- else }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .secretKey }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Projected volume sources for secretDelivery=file, for a component. Empty if there is nothing.
Call with (dict "ctx" $ "component" "syncer").
*/}}
{{- define "shotgun-cache.secretVolumeSources" -}}
{{- $secrets := include "shotgun-cache.secrets" .ctx | fromYaml -}}
{{- $ids := splitList "," (include "shotgun-cache.componentSecretIds" .) -}}
{{- range $id := $ids }}
{{- with (get $secrets $id) }}
- secret:
    name: {{ .secretName }}
    items:
      - key: {{ .secretKey }}
        path: {{ .file }}
{{- end }}
{{- end }}
{{- end }}

{{/* The value of a TOML scalar, array or inline table, from a Helm value (used for type filters). */}}
{{- define "shotgun-cache.toml" -}}
{{- $v := . -}}
{{- if kindIs "slice" $v -}}
[{{- range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "shotgun-cache.toml" $e }}{{ end }}]
{{- else if kindIs "map" $v -}}
{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }},{{ end }} {{ $k | toJson }} = {{ include "shotgun-cache.toml" (get $v $k) }}{{ end }} }
{{- else if kindIs "invalid" $v -}}
{{- fail "a type filter contains null, which TOML cannot hold" -}}
{{- else -}}
{{- $v | toJson -}}
{{- end -}}
{{- end }}

{{/*
Cross-field validation. The schema checks each key; this checks rules that span keys and fails
with every problem at once.
*/}}
{{- define "shotgun-cache.validateValues" -}}
{{- $v := .Values -}}
{{- $msgs := list -}}
{{- if gt (int $v.syncer.replicas) 1 }}
{{- $msgs = append $msgs (printf "syncer.replicas is %v: the syncer is a singleton and must run as one replica (0 pauses it)." $v.syncer.replicas) }}
{{- end }}
{{- if not $v.shotgun.url }}
{{- $msgs = append $msgs "shotgun.url is required: set it to your site, e.g. --set shotgun.url=https://studio.shotgunstudio.com" }}
{{- end }}
{{- if not $v.shotgun.scriptName }}
{{- $msgs = append $msgs "shotgun.scriptName is required: the name of the API script the syncer logs in as." }}
{{- end }}
{{- if and $v.shotgun.scriptKey $v.shotgun.existingSecret }}
{{- $msgs = append $msgs "shotgun.scriptKey and shotgun.existingSecret are both set: use one of them." }}
{{- else if not (or $v.shotgun.scriptKey $v.shotgun.existingSecret) }}
{{- $msgs = append $msgs "the Shotgun script key is missing: set shotgun.existingSecret (recommended) or shotgun.scriptKey." }}
{{- end }}
{{- if and $v.store.rethinkdb.password $v.store.rethinkdb.existingSecret }}
{{- $msgs = append $msgs "store.rethinkdb.password and store.rethinkdb.existingSecret are both set: use one of them." }}
{{- end }}
{{- if and $v.auth.tokens $v.auth.existingSecret }}
{{- $msgs = append $msgs "auth.tokens and auth.existingSecret are both set: use one of them." }}
{{- end }}
{{- if and $v.auth.required (not (or $v.auth.tokens $v.auth.existingSecret)) }}
{{- $msgs = append $msgs "auth.required is true but no tokens are configured: set auth.existingSecret or auth.tokens." }}
{{- end }}
{{- if and $v.syncer.webhook.secret $v.syncer.webhook.existingSecret }}
{{- $msgs = append $msgs "syncer.webhook.secret and syncer.webhook.existingSecret are both set: use one of them." }}
{{- end }}
{{- if and $v.api3.clients $v.api3.existingSecret }}
{{- $msgs = append $msgs "api3.clients and api3.existingSecret are both set: use one of them." }}
{{- end }}
{{- if eq $v.store.backend "sqlite" }}
{{- if ne (int $v.queryServer.replicas) 1 }}
{{- $msgs = append $msgs (printf "queryServer.replicas is %v but store.backend is sqlite: the embedded store lives on one node, so the query-server must run as exactly 1 replica (use store.backend=rethinkdb to scale)." $v.queryServer.replicas) }}
{{- end }}
{{- if $v.queryServer.autoscaling.enabled }}
{{- $msgs = append $msgs "queryServer.autoscaling.enabled is true but store.backend is sqlite: the embedded store cannot be scaled; set queryServer.autoscaling.enabled=false (or use store.backend=rethinkdb)." }}
{{- end }}
{{- if $v.queryServer.affinity.podAffinity }}
{{- $msgs = append $msgs "queryServer.affinity.podAffinity is set but store.backend is sqlite: the chart sets it to pin the query-server to the syncer's node." }}
{{- end }}
{{- end }}
{{- if $v.queryServer.autoscaling.enabled }}
{{- if gt (int $v.queryServer.autoscaling.minReplicas) (int $v.queryServer.autoscaling.maxReplicas) }}
{{- $msgs = append $msgs (printf "queryServer.autoscaling.minReplicas (%v) is greater than maxReplicas (%v)." $v.queryServer.autoscaling.minReplicas $v.queryServer.autoscaling.maxReplicas) }}
{{- end }}
{{- if not (dig "requests" "cpu" "" $v.queryServer.resources) }}
{{- $msgs = append $msgs "queryServer.autoscaling.enabled is true but queryServer.resources.requests.cpu is not set: the HPA's CPU target is a percentage of the request." }}
{{- end }}
{{- end }}
{{- if le (int $v.queryServer.terminationGracePeriodSeconds) (int $v.queryServer.config.drain_secs) }}
{{- $msgs = append $msgs (printf "queryServer.terminationGracePeriodSeconds (%v) must be longer than queryServer.config.drain_secs (%v), or pods are killed while draining." $v.queryServer.terminationGracePeriodSeconds $v.queryServer.config.drain_secs) }}
{{- end }}
{{- if and (not (kindIs "invalid" $v.queryServer.pdb.minAvailable)) (not (kindIs "invalid" $v.queryServer.pdb.maxUnavailable)) }}
{{- $msgs = append $msgs "queryServer.pdb.minAvailable and queryServer.pdb.maxUnavailable are both set: use one of them." }}
{{- end }}
{{- if and $v.queryServer.ingress.enabled (not $v.queryServer.ingress.hosts) }}
{{- $msgs = append $msgs "queryServer.ingress.enabled is true but queryServer.ingress.hosts is empty." }}
{{- end }}
{{- $ports := list $v.queryServer.ports.grpc $v.queryServer.ports.http $v.queryServer.ports.admin }}
{{- if ne (len ($ports | uniq)) 3 }}
{{- $msgs = append $msgs "queryServer.ports.grpc, .http and .admin must be different." }}
{{- end }}
{{- if eq (int $v.syncer.ports.grpc) (int $v.syncer.ports.admin) }}
{{- $msgs = append $msgs "syncer.ports.grpc and syncer.ports.admin must be different." }}
{{- end }}
{{- if $msgs }}
{{- fail (printf "\n\nVALUES VALIDATION:\n  - %s\n" (join "\n  - " $msgs)) }}
{{- end }}
{{- end }}

{{/*
Pod annotations that roll the pods when the config (or the chart-created Secret) changes.
*/}}
{{- define "shotgun-cache.rolloutAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{/*
Volume mounts shared by both containers. Call with (dict "ctx" $ "component" "syncer").
*/}}
{{- define "shotgun-cache.volumeMounts" -}}
- name: config
  mountPath: /etc/shotgun-cache/config.toml
  subPath: config.toml
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if include "shotgun-cache.secretVolumeSources" . | trim }}
{{- if eq .ctx.Values.secretDelivery "file" }}
- name: secrets
  mountPath: /etc/shotgun-cache/secrets
  readOnly: true
{{- end }}
{{- end }}
{{- if eq .ctx.Values.store.backend "sqlite" }}
- name: data
  mountPath: /data
{{- end }}
{{- end }}

{{/*
Volumes shared by both pods. Call with (dict "ctx" $ "component" "syncer").
*/}}
{{- define "shotgun-cache.volumes" -}}
- name: config
  configMap:
    name: {{ include "shotgun-cache.configMapName" .ctx }}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- $sources := include "shotgun-cache.secretVolumeSources" . | trim }}
{{- if and $sources (eq .ctx.Values.secretDelivery "file") }}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      {{- $sources | nindent 6 }}
{{- end }}
{{- if eq .ctx.Values.store.backend "sqlite" }}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "shotgun-cache.pvcName" .ctx }}
{{- end }}
{{- end }}

{{/* Environment common to both containers. Call with (dict "ctx" $ "component" "syncer"). */}}
{{- define "shotgun-cache.env" -}}
- name: SHOTGUN_CACHE_LOG_FORMAT
  value: json
{{- include "shotgun-cache.secretEnv" . }}
{{- end }}
