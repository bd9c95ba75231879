package metrics

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// pgQueryModule is the module whose version the build info reports as
// pg_query_version: the SQL parser behind every fingerprint.
const pgQueryModule = "github.com/pganalyze/pg_query_go/v6"

// BuildInfo says which nplus1 this is: the labels of nplus1_build_info,
// which "nplus1 version" prints too.
type BuildInfo struct {
	// Version is the main module's version: "(devel)" for a build from a
	// checkout, "unknown" when the binary has no build information.
	Version string
	// Revision is the VCS revision, with "-dirty" when the tree was
	// modified; "unknown" when the build did not stamp it (-buildvcs=false).
	Revision string
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string
	// PgQueryVersion is the version of pg_query_go, the SQL parser behind
	// every fingerprint; "unknown" when the binary lists no dependencies.
	PgQueryVersion string
}

// Build returns the binary's own build information.
func Build() BuildInfo {
	version, revision, goVersion, pgQuery := buildLabels()
	return BuildInfo{Version: version, Revision: revision, GoVersion: goVersion, PgQueryVersion: pgQuery}
}

// buildLabels returns the build info's labels from the binary's own build
// information: the main module's version ("(devel)" for a build from a
// checkout), the VCS revision ("-dirty" when the tree was modified; "unknown"
// when the build did not stamp it, as with -buildvcs=false), the Go version
// and pg_query_go's version.
func buildLabels() (version, revision, goVersion, pgQuery string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return labelsOf(bi)
}

// labelsOf reads the build info's labels from bi (nil: unknown). Test
// binaries list no dependencies, so pg_query_version is "unknown" in tests.
func labelsOf(bi *debug.BuildInfo) (version, revision, goVersion, pgQuery string) {
	version, revision, goVersion, pgQuery = "unknown", "unknown", runtime.Version(), "unknown"
	if bi == nil {
		return
	}
	if bi.Main.Version != "" {
		version = bi.Main.Version
	}
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && revision != "unknown" {
		revision += "-dirty"
	}
	for _, m := range bi.Deps {
		if m.Path == pgQueryModule {
			if m.Replace != nil && m.Replace.Version != "" {
				m = m.Replace
			}
			pgQuery = m.Version
		}
	}
	return
}

// newBuildInfo returns the nplus1_build_info gauge, always 1.
func newBuildInfo() prometheus.Collector {
	version, revision, goVersion, pgQuery := buildLabels()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nplus1_build_info",
		Help: "Always 1; its labels say which nplus1 this is: version, VCS revision, Go version and pg_query_go version.",
		ConstLabels: prometheus.Labels{
			"version":          version,
			"revision":         revision,
			"goversion":        goVersion,
			"pg_query_version": pgQuery,
		},
	})
	g.Set(1)
	return g
}
