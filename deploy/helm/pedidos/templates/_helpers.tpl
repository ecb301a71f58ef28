{{/*
The mesh's daemons: the top-level sections of the values with a `port`, their HTTP port
(/health, /ready, /metrics) and the variable that sets its address: the API's api.listen, the
others' <daemon>.admin_listen. scripts/deploy-check.sh compares the rendered chart with
scripts/lib/daemons.txt.
*/}}
{{- define "pedidos.daemons" -}}
{{- range $name, $settings := .Values }}
{{- if and (kindIs "map" $settings) (hasKey $settings "port") }}
{{ $name }}: { port: {{ $settings.port }}, listenVar: {{ eq $name "api" | ternary "PEDIDOS_API__LISTEN" (printf "PEDIDOS_%s__ADMIN_LISTEN" (upper $name)) }} }
{{- end }}
{{- end }}
{{- end -}}

{{- define "pedidos.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pedidos.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/part-of: pedidos
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* The selector of one daemon's pods: (dict "root" $ "daemon" "fraud") */}}
{{- define "pedidos.selectorLabels" -}}
app.kubernetes.io/name: pedidos-{{ .daemon }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "pedidos.image" -}}
{{- $image := .root.Values.image -}}
{{- printf "%s/%s%s:%s" $image.registry $image.prefix .daemon (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{/* Refusals: configurations the daemons would refuse at start-up, refused at install instead. */}}
{{- define "pedidos.validate" -}}
{{- $v := .Values -}}
{{- if not $v.kafka.bootstrapServers -}}
{{- fail "set kafka.bootstrapServers: the cluster's bootstrap server (Confluent Cloud: Cluster settings → Endpoints)" -}}
{{- end -}}
{{- if and (hasPrefix "SASL" $v.kafka.securityProtocol) (not $v.secret.name) -}}
{{- fail (printf "set secret.name: a Secret with kafka-sasl-username and kafka-sasl-password (kafka.securityProtocol is %s)" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if not (has $v.api.store (list "sqlite" "postgres")) -}}
{{- fail (printf "api.store must be sqlite or postgres, not %q" $v.api.store) -}}
{{- end -}}
{{- if and (eq $v.api.store "sqlite") (gt (int $v.api.replicas) 1) -}}
{{- fail (printf "api.replicas is %d but api.store is sqlite: an SQLite order view serves one instance. Set api.store=postgres (and the Secret's api-store-url) for several" (int $v.api.replicas)) -}}
{{- end -}}
{{- if and (eq $v.api.store "postgres") (not $v.secret.name) -}}
{{- fail "api.store is postgres: set secret.name, a Secret whose api-store-url holds the postgres:// URL" -}}
{{- end -}}
{{- if not (has $v.api.auth (list "jwt" "none")) -}}
{{- fail (printf "api.auth must be jwt or none, not %q" $v.api.auth) -}}
{{- end -}}
{{- if and (eq $v.api.auth "none") (not $v.api.allowAnonymous) -}}
{{- fail "api.auth is none: anyone reaching the Service could place and read any order. Set api.allowAnonymous=true to mean it, or keep api.auth=jwt" -}}
{{- end -}}
{{- if and (eq $v.api.auth "jwt") (not $v.api.jwt.publicKeySecret.name) (not $v.secret.name) -}}
{{- fail "api.auth is jwt: set secret.name (its api-jwt-secret key) or api.jwt.publicKeySecret" -}}
{{- end -}}
{{- end -}}
