package otlpexport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/nplus1/nplus1/detector"
)

// Defaults of Options.
const (
	// DefaultQueueSize is how many spans may wait for the endpoint before
	// new findings are dropped.
	DefaultQueueSize = 2048
	// DefaultBatchTimeout is how long a span waits for others to share its
	// export request: findings are few, and a user is watching for them.
	DefaultBatchTimeout = time.Second
	// DefaultErrorInterval is how often export errors are logged at most.
	DefaultErrorInterval = time.Minute
	// maxBatch is the most spans in one export request.
	maxBatch = 512
	// exportTimeout bounds one export request, retries included.
	exportTimeout = 30 * time.Second
	// maxAttributeBytes cuts attribute values (a normalized query can be
	// long: an ORM's IN list of a thousand $n).
	maxAttributeBytes = 16 << 10
)

// TracesPath is the path an OTLP/HTTP receiver takes traces on, under its
// base URL.
const TracesPath = "/v1/traces"

// Options configure an Exporter.
type Options struct {
	// Endpoint is the full URL spans are posted to (TracesURL of a base
	// URL). Empty: the SDK's own configuration, from the standard
	// variables OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and
	// OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318/v1/traces.
	// Headers, certificates, compression and the request timeout are
	// always the SDK's, from OTEL_EXPORTER_OTLP_HEADERS and the rest.
	Endpoint string
	// QueueSize is how many spans may wait for the endpoint; past it new
	// findings are dropped and counted (default DefaultQueueSize).
	QueueSize int
	// BatchTimeout is how long a span may wait for others to share its
	// request (default DefaultBatchTimeout).
	BatchTimeout time.Duration
	// ServiceVersion is the service.version resource attribute; the
	// service.name is "nplus1". OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES, read by the SDK, win over both.
	ServiceVersion string
	// Logger gets the export errors, at most one line per ErrorInterval
	// (default DefaultErrorInterval). Nil discards them.
	Logger        *slog.Logger
	ErrorInterval time.Duration
	// Exporter replaces the OTLP/HTTP exporter, for tests that look at the
	// spans in the process; Endpoint is then unused.
	Exporter sdktrace.SpanExporter
}

// Stats are an Exporter's counters.
type Stats struct {
	// Exported spans were accepted by the endpoint.
	Exported uint64
	// Dropped findings were not made spans: QueueSize spans were waiting
	// for the endpoint, or the Exporter was shut down.
	Dropped uint64
	// Failed spans were sent and not accepted: the endpoint refused them,
	// could not be reached, or did not answer in time.
	Failed uint64
	// Pending spans wait for the endpoint (after Shutdown: those it gave
	// up on when its context ended).
	Pending int64
}

// Exporter is an analyzer sink that exports each finding as a span.
type Exporter struct {
	tp        *sdktrace.TracerProvider
	se        sdktrace.SpanExporter // under the processor
	tracer    trace.Tracer
	queueSize int64

	mu     sync.Mutex // guards closed against a finding started during Shutdown
	closed bool

	pending  atomic.Int64 // spans handed to the processor and not yet exported
	dropped  atomic.Uint64
	exported atomic.Uint64
	failed   atomic.Uint64
}

// New starts an Exporter: its batch processor's goroutine runs until
// Shutdown. Nothing is sent before the first finding.
func New(ctx context.Context, opts Options) (*Exporter, error) {
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.BatchTimeout <= 0 {
		opts.BatchTimeout = DefaultBatchTimeout
	}
	if opts.ErrorInterval <= 0 {
		opts.ErrorInterval = DefaultErrorInterval
	}
	installErrorLog(opts.Logger, opts.ErrorInterval)
	se := opts.Exporter
	if se == nil {
		var httpOpts []otlptracehttp.Option
		if opts.Endpoint != "" {
			httpOpts = append(httpOpts, otlptracehttp.WithEndpointURL(opts.Endpoint))
		}
		var err error
		if se, err = otlptracehttp.New(ctx, httpOpts...); err != nil {
			return nil, fmt.Errorf("OTLP exporter: %w", err)
		}
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("nplus1"), semconv.ServiceVersion(opts.ServiceVersion)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES: last, so they win
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("OTLP resource: %w", err)
	}
	e := &Exporter{queueSize: int64(opts.QueueSize), se: se}
	bsp := sdktrace.NewBatchSpanProcessor(&countingExporter{SpanExporter: se, e: e},
		sdktrace.WithMaxQueueSize(opts.QueueSize),
		sdktrace.WithMaxExportBatchSize(min(maxBatch, opts.QueueSize)),
		sdktrace.WithBatchTimeout(opts.BatchTimeout),
		sdktrace.WithExportTimeout(exportTimeout),
	) // not WithBlocking: a full queue drops, it never waits
	limits := sdktrace.NewSpanLimits()
	limits.AttributeValueLengthLimit = maxAttributeBytes
	e.tp = sdktrace.NewTracerProvider(
		sdktrace.WithSpanProcessor(bsp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithRawSpanLimits(limits),
	)
	e.tracer = e.tp.Tracer("github.com/nplus1/nplus1/otlpexport", trace.WithInstrumentationVersion(opts.ServiceVersion))
	return e, nil
}

// Finding exports f as a span. It never blocks: when QueueSize spans are
// waiting for the endpoint, f is dropped and counted.
func (e *Exporter) Finding(f *detector.Finding) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.pending.Load() >= e.queueSize {
		e.dropped.Add(1)
		return
	}
	// Counted before the span ends: the processor may export it at once.
	e.pending.Add(1)
	ctx := context.Background()
	parent, traced := parentOf(f)
	if traced {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	start, end := windowOf(f)
	attrs := Attributes(f)
	if f.TraceID != "" && !traced {
		attrs = append(attrs, attrTraceID.String(f.TraceID))
	}
	_, span := e.tracer.Start(ctx, SpanName(f),
		trace.WithTimestamp(start),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attrs...),
	)
	span.End(trace.WithTimestamp(end))
}

// Stats returns the Exporter's counters.
func (e *Exporter) Stats() Stats {
	return Stats{
		Exported: e.exported.Load(),
		Dropped:  e.dropped.Load(),
		Failed:   e.failed.Load(),
		Pending:  e.pending.Load(),
	}
}

// Shutdown exports the spans still waiting, until ctx ends, and stops the
// Exporter: findings after it are dropped.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	err := e.tp.Shutdown(ctx)
	if err != nil {
		// The endpoint did not take the last spans in time. The processor
		// stops its exporter only once its export returns: stop it now,
		// which ends the request in flight, so that nothing of the export
		// outlives Shutdown by more than a moment.
		_ = e.se.Shutdown(context.Background())
	}
	return err
}

// countingExporter counts what the processor's batches became.
type countingExporter struct {
	sdktrace.SpanExporter
	e *Exporter
}

// ExportSpans implements sdktrace.SpanExporter.
func (c *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := c.SpanExporter.ExportSpans(ctx, spans)
	n := len(spans)
	c.e.pending.Add(-int64(n))
	if err != nil {
		c.e.failed.Add(uint64(n))
	} else {
		c.e.exported.Add(uint64(n))
	}
	return err
}

// windowOf is the span's start and end: the finding's window, or its time
// when the window is not known.
func windowOf(f *detector.Finding) (start, end time.Time) {
	start, end = f.WindowStart, f.WindowEnd
	if end.IsZero() {
		end = f.Time
	}
	if start.IsZero() || start.After(end) {
		start = end
	}
	return start, end
}

// TracesURL turns an OTLP/HTTP receiver's base URL, as --otlp-endpoint and
// OTEL_EXPORTER_OTLP_ENDPOINT take it (http://collector:4318), into the
// URL traces are posted to (http://collector:4318/v1/traces). The error
// says what a valid value looks like and never repeats the value, which
// may hold credentials.
func TracesURL(base string) (string, error) {
	u, err := parseURL(base, "the base URL of an OTLP/HTTP receiver, such as http://127.0.0.1:4318 or https://otlp.example.com")
	if err != nil {
		return "", err
	}
	u.Path = strings.TrimRight(u.Path, "/") + TracesPath
	u.RawPath = ""
	return u.String(), nil
}

// CheckTracesURL checks a full traces URL, as
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT takes it
// (http://collector:4318/v1/traces), and returns it trimmed. The error is
// TracesURL's kind.
func CheckTracesURL(full string) (string, error) {
	u, err := parseURL(full, "the URL an OTLP/HTTP receiver takes traces on, such as http://127.0.0.1:4318/v1/traces")
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// parseURL parses an http or https URL with a host and no credentials,
// query or fragment; its errors end with "want " + want.
func parseURL(raw, want string) (*url.URL, error) {
	want = "want " + want
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	switch {
	case !strings.Contains(raw, "://"):
		return nil, errors.New("the scheme must be http or https; " + want)
	case err != nil:
		return nil, errors.New("not a URL; " + want)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("the scheme must be http or https; " + want)
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("no host; " + want)
	case u.User != nil:
		return nil, errors.New("credentials in the URL are not sent: put them in OTEL_EXPORTER_OTLP_HEADERS (such as Authorization=Bearer%20TOKEN); " + want)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, errors.New("a query or fragment is not allowed; " + want)
	}
	if p := u.Port(); p != "" {
		if _, perr := strconv.ParseUint(p, 10, 16); perr != nil {
			return nil, errors.New("bad port; " + want)
		}
	}
	return u, nil
}

// Redacted is a URL for logs: scheme, host, port and path only.
func Redacted(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(invalid URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
