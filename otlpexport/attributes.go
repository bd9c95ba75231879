package otlpexport

import (
	"context"
	"maps"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/nplus1/nplus1/detector"
)

// The finding's own attributes, beside the database semantic conventions.
const (
	attrKind           = attribute.Key("nplus1.kind")
	attrSeverity       = attribute.Key("nplus1.severity")
	attrFingerprint    = attribute.Key("nplus1.fingerprint")
	attrCount          = attribute.Key("nplus1.count")
	attrDistinct       = attribute.Key("nplus1.distinct_params")
	attrDurationMS     = attribute.Key("nplus1.duration_ms")
	attrRows           = attribute.Key("nplus1.rows")
	attrTables         = attribute.Key("nplus1.tables")
	attrSourceQuery    = attribute.Key("nplus1.source.query")
	attrSourceFP       = attribute.Key("nplus1.source.fingerprint")
	attrSourceRows     = attribute.Key("nplus1.source.rows")
	attrEvidenceKind   = attribute.Key("nplus1.evidence.kind")
	attrEvidenceColumn = attribute.Key("nplus1.evidence.source_column")
	attrEvidenceFP     = attribute.Key("nplus1.evidence.source_fingerprint")
	attrEvidenceParam  = attribute.Key("nplus1.evidence.param")
	attrEvidenceMatch  = attribute.Key("nplus1.evidence.matched")
	attrEvidenceOf     = attribute.Key("nplus1.evidence.of")
	attrEvidenceConn   = attribute.Key("nplus1.evidence.source_connection")
	attrEvidenceHops   = attribute.Key("nplus1.evidence.hops")
	attrSuggestion     = attribute.Key("nplus1.suggestion")
	attrOccurrences    = attribute.Key("nplus1.occurrences")
	attrConnections    = attribute.Key("nplus1.connections")
	attrConnectionID   = attribute.Key("nplus1.connection.id")
	attrUser           = attribute.Key("nplus1.connection.user")
	attrApplication    = attribute.Key("nplus1.application_name")
	// attrTraceID is set on a finding whose trace id could not be joined
	// (no usable traceparent tag), so that it can still be searched.
	attrTraceID = attribute.Key("nplus1.trace_id")
	// attrTagPrefix starts the sqlcommenter tags: nplus1.tag.route.
	attrTagPrefix = "nplus1.tag."
)

// maxTags bounds the sqlcommenter tags copied onto a span.
const maxTags = 16

// SpanName is the span's name: "nplus1 KIND TABLE" ("nplus1 n_plus_one
// users"), without TABLE when the query names none.
func SpanName(f *detector.Finding) string {
	name := "nplus1 " + string(f.Kind)
	if len(f.Tables) > 0 {
		name += " " + f.Tables[0]
	}
	return name
}

// Attributes are the span's attributes for f: the database semantic
// conventions, then the finding's fields under nplus1.*. Queries are the
// finding's normalized text; nothing here is a literal or parameter value.
func Attributes(f *detector.Finding) []attribute.KeyValue {
	a := []attribute.KeyValue{
		semconv.DBSystemNamePostgreSQL,
		semconv.DBQueryText(f.Query),
		attrKind.String(string(f.Kind)),
		attrSeverity.String(string(f.Severity)),
		attrFingerprint.String(f.Fingerprint),
		attrCount.Int(f.Count),
		attrDurationMS.Float64(f.DurationMS),
		attrSuggestion.String(f.Suggestion),
		attrOccurrences.Int(f.Occurrences),
		attrConnectionID.Int64(int64(f.Connection.ID)),
	}
	if f.Connection.Database != "" {
		a = append(a, semconv.DBNamespace(f.Connection.Database))
	}
	if len(f.Tables) == 1 {
		a = append(a, semconv.DBCollectionName(f.Tables[0]))
	}
	if len(f.Tables) > 0 {
		a = append(a, attrTables.StringSlice(f.Tables))
	}
	if f.Command != "" {
		a = append(a, semconv.DBOperationName(f.Command))
	}
	if f.DistinctParams > 0 {
		a = append(a, attrDistinct.Int(f.DistinctParams))
	}
	if f.Rows > 0 {
		a = append(a, attrRows.Int64(f.Rows))
	}
	if f.Connections > 0 {
		a = append(a, attrConnections.Int(f.Connections))
	}
	if f.Connection.User != "" {
		a = append(a, attrUser.String(f.Connection.User))
	}
	if f.ApplicationName != "" {
		a = append(a, attrApplication.String(f.ApplicationName))
	}
	if s := f.Source; s != nil {
		a = append(a, attrSourceQuery.String(s.Query), attrSourceFP.String(s.Fingerprint), attrSourceRows.Int64(s.Rows))
	}
	a = appendEvidence(a, f.Evidence)
	return appendTags(a, f.Tags)
}

// appendEvidence adds the N+1's evidence: names, positions and counts.
func appendEvidence(a []attribute.KeyValue, ev *detector.Evidence) []attribute.KeyValue {
	if ev == nil {
		return a
	}
	a = append(a, attrEvidenceKind.String(ev.Kind))
	if ev.SourceFingerprint != "" {
		a = append(a, attrEvidenceFP.String(ev.SourceFingerprint))
	}
	if ev.SourceColumn != "" {
		a = append(a, attrEvidenceColumn.String(ev.SourceColumn))
	}
	if ev.Param > 0 {
		a = append(a, attrEvidenceParam.Int(ev.Param))
	}
	if ev.Of > 0 {
		a = append(a, attrEvidenceMatch.Int(ev.Matched), attrEvidenceOf.Int(ev.Of))
	}
	if ev.SourceConnection > 0 {
		a = append(a, attrEvidenceConn.Int64(int64(ev.SourceConnection)))
	}
	if ev.Hops > 0 {
		a = append(a, attrEvidenceHops.Int(ev.Hops))
	}
	return a
}

// appendTags adds the sqlcommenter tags, in key order, at most maxTags of
// them, leaving out the trace context (the span's parent says it).
func appendTags(a []attribute.KeyValue, tags map[string]string) []attribute.KeyValue {
	n := 0
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if k == "traceparent" || k == "tracestate" || k == "" {
			continue
		}
		if n == maxTags {
			break
		}
		a = append(a, attribute.String(attrTagPrefix+k, tags[k]))
		n++
	}
	return a
}

// parentOf is the application's span the finding's statements named in
// their sqlcommenter traceparent, when it is on the finding's trace.
func parentOf(f *detector.Finding) (trace.SpanContext, bool) {
	if f.TraceID == "" || f.Tags["traceparent"] == "" {
		return trace.SpanContext{}, false
	}
	carrier := propagation.MapCarrier{"traceparent": f.Tags["traceparent"]}
	if ts := f.Tags["tracestate"]; ts != "" {
		carrier["tracestate"] = ts
	}
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
	if !sc.IsValid() || sc.TraceID().String() != f.TraceID {
		return trace.SpanContext{}, false
	}
	return sc, true
}
