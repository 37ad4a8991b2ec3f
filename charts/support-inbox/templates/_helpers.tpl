{{/* Kubernetes recommended labels; `component` names the part. */}}
{{- define "inbox.labels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: support-inbox
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}

{{- define "inbox.selector" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{- define "inbox.fullname" -}}
{{- printf "%s-%s" .root.Release.Name .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "inbox.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .service (.root.Values.image.tag | default .root.Chart.AppVersion) }}
{{- end }}

{{/* Restricted pod security for every workload of the chart. */}}
{{- define "inbox.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 10001 }}
runAsGroup: {{ .uid | default 10001 }}
fsGroup: {{ .uid | default 10001 }}
seccompProfile: { type: RuntimeDefault }
{{- end }}

{{- define "inbox.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .readOnly | default false }}
capabilities: { drop: [ALL] }
{{- end }}

{{/* A generated secret value that survives upgrades: reuse what the cluster holds. */}}
{{- define "inbox.keep" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (.length | default 32) -}}
{{- end -}}
{{- end }}

{{- define "inbox.authSecret" -}}
{{- .Values.inbox.existingAuthSecret | default (printf "%s-auth" .Release.Name) }}
{{- end }}

{{- /* The Redis of the state store (and of the broker when it is redis): broker.host names
another broker's address for the other types, so it counts only for redis. */}}
{{- define "inbox.redisHost" -}}
{{- $chartRedis := printf "%s:6379" (include "inbox.fullname" (dict "root" . "component" "redis")) }}
{{- if eq .Values.broker.type "redis" }}{{ .Values.broker.host | default $chartRedis }}{{ else }}{{ $chartRedis }}{{ end }}
{{- end }}

{{- define "inbox.ollamaUrl" -}}
{{- if .Values.ollama.enabled -}}
{{- printf "http://%s:11434" (include "inbox.fullname" (dict "root" . "component" "ollama")) -}}
{{- else -}}
{{- .Values.ollama.externalUrl -}}
{{- end -}}
{{- end }}

{{/* Every problem in the values at once, before anything renders. */}}
{{- define "inbox.validateValues" -}}
{{- $errors := list -}}
{{- if not (.Capabilities.APIVersions.Has "dapr.io/v1alpha1/Component") -}}
{{- $errors = append $errors "the Dapr CRDs are not installed: install the Dapr control plane first (`dapr init -k`, or helm install dapr dapr/dapr -n dapr-system --create-namespace); for `helm template`, pass --api-versions dapr.io/v1alpha1/Component" -}}
{{- end -}}
{{- if and (ne .Values.broker.type "redis") (ne .Values.broker.type "rabbitmq") (not .Values.broker.host) -}}
{{- $errors = append $errors (printf "broker.host is required for broker.type=%s" .Values.broker.type) -}}
{{- end -}}
{{- if and (or (eq .Values.broker.type "kafka") (eq .Values.broker.type "jetstream")) (not .Values.broker.existingSecret) -}}
{{- $errors = append $errors (printf "broker.existingSecret is required for %s: a Secret with the broker's credentials (%s); an unauthenticated broker lets anything in the cluster publish" .Values.broker.type (ternary "keys username and password, SASL" "key token" (eq .Values.broker.type "kafka"))) -}}
{{- end -}}
{{- if and (eq .Values.broker.type "rabbitmq") (not .Values.broker.existingSecret) -}}
{{- $errors = append $errors "broker.existingSecret is required for rabbitmq: a Secret with key connectionString" -}}
{{- end -}}
{{- if and (eq .Values.broker.type "redis") (not .Values.redis.enabled) (not .Values.broker.host) -}}
{{- $errors = append $errors "redis.enabled=false needs broker.host of an external Redis" -}}
{{- end -}}
{{- if and (not .Values.postgresql.enabled) (not .Values.postgresql.external.existingSecret) -}}
{{- $errors = append $errors "postgresql.enabled=false needs postgresql.external.existingSecret" -}}
{{- end -}}
{{- if and (not .Values.ollama.enabled) (not .Values.ollama.externalUrl) -}}
{{- $errors = append $errors "ollama.enabled=false needs ollama.externalUrl" -}}
{{- end -}}
{{- $file := .Values.ollama.modelFile -}}
{{- if eq .Values.ollama.modelSource "file" -}}
{{- if not .Values.ollama.enabled -}}
{{- $errors = append $errors "ollama.modelSource=file creates the model in the chart's Ollama: it needs ollama.enabled=true (an external Ollama's models are created there)" -}}
{{- end -}}
{{- if and $file.image $file.volume -}}
{{- $errors = append $errors "ollama.modelFile.image and ollama.modelFile.volume are exclusive: the model comes from one of them" -}}
{{- else if not (or $file.image $file.volume) -}}
{{- $errors = append $errors (printf "ollama.modelSource=file needs ollama.modelFile.image (an image holding the Modelfile and the GGUF file at ollama.modelFile.path, %s) or ollama.modelFile.volume (a volume source holding them, e.g. persistentVolumeClaim: {claimName: models})" $file.path) -}}
{{- end -}}
{{- else if or $file.image $file.volume -}}
{{- $errors = append $errors (printf "ollama.modelFile is read only with ollama.modelSource=file (it is %s): set modelSource=file, or drop modelFile.image/volume" .Values.ollama.modelSource) -}}
{{- end -}}
{{- if and .Values.metrics.podMonitor.enabled (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PodMonitor")) -}}
{{- $errors = append $errors "metrics.podMonitor.enabled needs the Prometheus Operator CRDs (monitoring.coreos.com/v1 PodMonitor): install them or the Prometheus Operator first; for `helm template`, pass --api-versions monitoring.coreos.com/v1/PodMonitor" -}}
{{- end -}}
{{- if gt (int .Values.inbox.aiWorker.minReplicas) (int .Values.inbox.aiWorker.maxReplicas) -}}
{{- $errors = append $errors "inbox.aiWorker.minReplicas must not exceed inbox.aiWorker.maxReplicas" -}}
{{- end -}}
{{- $widget := .Values.widget -}}
{{- if and $widget.channels $widget.existingSecret -}}
{{- $errors = append $errors "widget.channels and widget.existingSecret are exclusive: the gateway reads one WIDGET_CHANNELS, from the chart's Secret or from yours" -}}
{{- end -}}
{{- range $id, $channel := $widget.channels -}}
{{- $at := printf "widget.channels.%s" $id -}}
{{- if and $channel.identitySecret $channel.identitySecretRef -}}
{{- $errors = append $errors (printf "%s: identitySecret and identitySecretRef are exclusive" $at) -}}
{{- else if $channel.identitySecretRef -}}
{{- $ref := $channel.identitySecretRef -}}
{{- $secret := lookup "v1" "Secret" $.Release.Namespace $ref.name -}}
{{- if not $secret -}}
{{- $errors = append $errors (printf "%s.identitySecretRef: Secret %s not found in namespace %s: create it before installing (helm template and a client-side --dry-run cannot read Secrets; render offline with widget.existingSecret instead)" $at $ref.name $.Release.Namespace) -}}
{{- else if not (hasKey ($secret.data | default dict) $ref.key) -}}
{{- $errors = append $errors (printf "%s.identitySecretRef: Secret %s has no key %s" $at $ref.name $ref.key) -}}
{{- else if lt (len (index $secret.data $ref.key | b64dec)) 32 -}}
{{- $errors = append $errors (printf "%s.identitySecretRef: Secret %s key %s holds %d characters; the gateway needs at least 32" $at $ref.name $ref.key (len (index $secret.data $ref.key | b64dec))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nsupport-inbox: invalid values:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end }}

{{/* OPERATORS JSON for the gateway, from inbox.operators (argon2 hashes only). */}}
{{- define "inbox.operatorsJson" -}}
{{- $accounts := dict -}}
{{- range $user, $account := .Values.inbox.operators -}}
{{- $_ := set $accounts $user (dict "display_name" $account.displayName "password_hash" $account.passwordHash "role" ($account.role | default "agent")) -}}
{{- end -}}
{{- toJson $accounts -}}
{{- end }}

{{/* The Secret holding WIDGET_CHANNELS: the chart's, or widget.existingSecret. */}}
{{- define "inbox.widgetSecret" -}}
{{- .Values.widget.existingSecret | default (printf "%s-widget" .Release.Name) }}
{{- end }}

{{/* WIDGET_CHANNELS JSON for the gateway, from widget.channels. An identitySecretRef the
cluster does not hold is left out here and reported by inbox.validateValues. */}}
{{- define "inbox.widgetChannelsJson" -}}
{{- $channels := dict -}}
{{- range $id, $channel := .Values.widget.channels -}}
{{- $entry := dict "name" $channel.name "allowed_origins" $channel.allowedOrigins "assistant" ($channel.assistant | default "suggest") -}}
{{- if $channel.serverClients -}}
{{- $_ := set $entry "server_clients" true -}}
{{- end -}}
{{- if $channel.identitySecret -}}
{{- $_ := set $entry "identity_secret" $channel.identitySecret -}}
{{- else if $channel.identitySecretRef -}}
{{- $secret := lookup "v1" "Secret" $.Release.Namespace $channel.identitySecretRef.name -}}
{{- $value := index (($secret | default dict).data | default dict) $channel.identitySecretRef.key -}}
{{- if $value -}}
{{- $_ := set $entry "identity_secret" ($value | b64dec) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $channels $id $entry -}}
{{- end -}}
{{- toJson $channels -}}
{{- end }}

{{/* Changes whenever WIDGET_CHANNELS does, so the operator rolls the gateway (it reads the
file at start). Empty for an existingSecret `lookup` cannot read (helm template). */}}
{{- define "inbox.widgetRevision" -}}
{{- if .Values.widget.existingSecret -}}
{{- with lookup "v1" "Secret" .Release.Namespace .Values.widget.existingSecret -}}
{{- .data | toJson | sha256sum | trunc 16 -}}
{{- end -}}
{{- else -}}
{{- include "inbox.widgetChannelsJson" . | sha256sum | trunc 16 -}}
{{- end -}}
{{- end }}
