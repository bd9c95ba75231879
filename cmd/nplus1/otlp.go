package main

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/nplus1/nplus1/analyzer"
	"github.com/nplus1/nplus1/metrics"
	"github.com/nplus1/nplus1/otlpexport"
)

// otlpShutdownTimeout bounds the export of the last spans at exit.
const otlpShutdownTimeout = 5 * time.Second

// The standard OpenTelemetry variables nplus1 looks at itself; the SDK reads
// these and the rest of OTEL_EXPORTER_OTLP_* (headers, certificates,
// timeout, compression) and OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES.
const (
	envOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envOTLPProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envOTLPTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envOTelSDKDisabled    = "OTEL_SDK_DISABLED"
	envOTelTracesExporter = "OTEL_TRACES_EXPORTER"
)

// otlpOptions are the proxy's flags for exporting findings as spans.
type otlpOptions struct {
	fs       *flagSet
	endpoint *string
}

func newOTLPOptions(fs *flagSet) *otlpOptions {
	return &otlpOptions{
		fs: fs,
		endpoint: fs.String("otlp-endpoint", "", "export each finding as an OpenTelemetry span to the OTLP/HTTP receiver whose\n"+
			"base `URL` this is (such as http://127.0.0.1:4318; spans go to its /v1/traces), on\n"+
			"the application's trace when its SQL carried a sqlcommenter traceparent. Empty:\n"+
			"off, unless "+envOTLPEndpoint+" or "+envOTLPTracesEndpoint+" is set.\n"+
			"Headers (credentials), certificates and timeouts: the standard OTEL_EXPORTER_OTLP_*"),
	}
}

// otlpExport is a running export of findings; a nil *otlpExport is off.
type otlpExport struct {
	exp    *otlpexport.Exporter
	logger *slog.Logger
}

// start checks --otlp-endpoint and the standard variables and, when the
// export is on, starts it. Every error is a *usageError.
func (o *otlpOptions) start(ctx context.Context, inv *invocation) (*otlpExport, error) {
	url, on, err := o.endpointURL(inv.getenv)
	if err != nil || !on {
		return nil, err
	}
	logger := inv.logger.With("component", "otlp")
	exp, err := otlpexport.New(ctx, otlpexport.Options{
		Endpoint:       url,
		ServiceVersion: metrics.Build().Version,
		Logger:         logger,
	})
	if err != nil {
		return nil, usageErrorf("OTLP export: %v", err)
	}
	logger.Info("exporting findings as OTLP spans", "endpoint", otlpexport.Redacted(url))
	return &otlpExport{exp: exp, logger: logger}, nil
}

// endpointURL is the URL spans go to: --otlp-endpoint's, else
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is, else
// OTEL_EXPORTER_OTLP_ENDPOINT's; on says whether the export is on at all.
func (o *otlpOptions) endpointURL(getenv func(string) string) (url string, on bool, err error) {
	if *o.endpoint != "" {
		if url, err = otlpexport.TracesURL(*o.endpoint); err != nil {
			return "", false, o.fs.errorf("otlp-endpoint", "%v", err)
		}
	} else {
		disabled := strings.EqualFold(strings.TrimSpace(getenv(envOTelSDKDisabled)), "true") ||
			strings.TrimSpace(getenv(envOTelTracesExporter)) == "none"
		if disabled || !otelEndpointSet(getenv) {
			return "", false, nil
		}
		// The SDK would read these too; read here, they are checked with
		// errors that name them, and the same getenv serves every setting.
		if v := getenv(envOTLPTracesEndpoint); v != "" {
			if url, err = otlpexport.CheckTracesURL(v); err != nil {
				return "", false, usageErrorf("%s: %v", envOTLPTracesEndpoint, err)
			}
		} else if url, err = otlpexport.TracesURL(getenv(envOTLPEndpoint)); err != nil {
			return "", false, usageErrorf("%s: %v", envOTLPEndpoint, err)
		}
	}
	name := envOTLPTracesProtocol
	p := getenv(name)
	if p == "" {
		name, p = envOTLPProtocol, getenv(envOTLPProtocol)
	}
	if p = strings.TrimSpace(p); p != "" && p != "http/protobuf" {
		return "", false, usageErrorf("%s=%s: nplus1 exports OTLP over HTTP (http/protobuf) only; unset it or set "+
			"http/protobuf, and point the endpoint at the receiver's OTLP/HTTP port, usually 4318", name, p)
	}
	return url, true, nil
}

// otelEndpointSet reports whether a standard variable names an endpoint.
func otelEndpointSet(getenv func(string) string) bool {
	return getenv(envOTLPTracesEndpoint) != "" || getenv(envOTLPEndpoint) != ""
}

// sinks adds the export to the analyzer's sinks.
func (x *otlpExport) sinks(sinks []analyzer.Sink) []analyzer.Sink {
	if x == nil {
		return sinks
	}
	return append(sinks, x.exp)
}

// watch exports the export's counters on /metrics.
func (x *otlpExport) watch(m *proxyMetrics) error {
	if x == nil || m == nil {
		return nil
	}
	return m.exp.Watch(metrics.Sources{Spans: func() metrics.SpanStats {
		s := x.exp.Stats()
		return metrics.SpanStats{Exported: s.Exported, Dropped: s.Dropped, Failed: s.Failed}
	}})
}

// stop exports the spans still waiting, for at most otlpShutdownTimeout,
// once the analyzer has flushed its last findings, and logs the counts.
func (x *otlpExport) stop(ctx context.Context) {
	if x == nil {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), otlpShutdownTimeout)
	defer cancel()
	err := x.exp.Shutdown(sctx)
	s := x.exp.Stats()
	args := []any{"exported", s.Exported, "dropped", s.Dropped, "failed", s.Failed}
	if s.Pending > 0 {
		args = append(args, "not_exported", s.Pending)
	}
	if err != nil {
		args = append(args, "err", err.Error())
	}
	x.logger.Info("OTLP export stopped", args...)
}
