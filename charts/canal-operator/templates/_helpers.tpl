{{- define "canal-operator.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "canal-operator.labels" -}}
app.kubernetes.io/name: canal-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "canal-operator.selector" -}}
app.kubernetes.io/name: canal-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
