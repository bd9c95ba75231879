package main

import (
	"strings"
	"testing"
)

// TestOTLPEndpointSettings covers where the export's endpoint comes from:
// the flag, its NPLUS1_ twin, the standard OpenTelemetry variables, and
// what turns it off or is refused.
func TestOTLPEndpointSettings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		url     string // "" and !on: off
		on      bool
		wantErr string
	}{
		{name: "off by default"},
		{name: "flag", args: []string{"--otlp-endpoint", "http://127.0.0.1:4318"}, url: "http://127.0.0.1:4318/v1/traces", on: true},
		{name: "env twin", env: map[string]string{"NPLUS1_OTLP_ENDPOINT": "https://otlp.example.com/"}, url: "https://otlp.example.com/v1/traces", on: true},
		{name: "standard base URL", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, url: "http://collector:4318/v1/traces", on: true},
		{name: "standard traces URL wins", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://tempo:4318/otlp/v1/traces"}, url: "http://tempo:4318/otlp/v1/traces", on: true},
		{name: "flag wins over standard", args: []string{"--otlp-endpoint", "http://jaeger:4318"},
			env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://tempo:4318/v1/traces"}, url: "http://jaeger:4318/v1/traces", on: true},
		{name: "SDK disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}},
		{name: "traces exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}},
		{name: "gRPC protocol is someone else's when off", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}},
		{name: "http/protobuf", args: []string{"--otlp-endpoint", "http://jaeger:4318"},
			env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, url: "http://jaeger:4318/v1/traces", on: true},
		{name: "gRPC refused", args: []string{"--otlp-endpoint", "http://jaeger:4317"},
			env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, wantErr: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc: nplus1 exports OTLP over HTTP (http/protobuf) only"},
		{name: "no scheme", args: []string{"--otlp-endpoint", "jaeger:4318"}, wantErr: "--otlp-endpoint: the scheme must be http or https; want the base URL"},
		{name: "credentials", env: map[string]string{"NPLUS1_OTLP_ENDPOINT": "http://user:pa55word@jaeger:4318"},
			wantErr: "--otlp-endpoint (from NPLUS1_OTLP_ENDPOINT): credentials in the URL are not sent: put them in OTEL_EXPORTER_OTLP_HEADERS"},
		{name: "bad standard variable", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318/v1/traces"},
			wantErr: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the scheme must be http or https; want the URL an OTLP/HTTP receiver takes traces on, such as http://127.0.0.1:4318/v1/traces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFlagSet("proxy")
			o := newOTLPOptions(fs)
			if _, err := fs.parse(tc.args, mapEnv(tc.env)); err != nil {
				t.Fatal(err)
			}
			url, on, err := o.endpointURL(mapEnv(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one with %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "pa55word") {
					t.Errorf("the error repeats the password: %v", err)
				}
				return
			}
			if err != nil || url != tc.url || on != tc.on {
				t.Errorf("got %q, on %v, err %v; want %q, on %v", url, on, err, tc.url, tc.on)
			}
		})
	}
}
