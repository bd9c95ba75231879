package main

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/inspect"
)

// replayInspectTimeout bounds how long a replay waits for one answer of
// the inspection connection (a few statements of at most 2 s each).
const replayInspectTimeout = 10 * time.Second

// inspectOptions are the flags of the optional inspection connection
// (package inspect), behind the missing_index rule and leading_wildcard's
// judgement.
type inspectOptions struct {
	fs      *flagSet
	url     *string
	urlFile *string
}

func newInspectOptions(fs *flagSet) *inspectOptions {
	return &inspectOptions{
		fs: fs,
		url: fs.String("inspect-url", "", "an inspection connection to the database (a postgres:// `URL`, its own\n"+
			"read-only role): nplus1 reads the catalogs and EXPLAINs generic plans of\n"+
			"hot query shapes and leading-wildcard searches (never ANALYZE, never a\n"+
			"write) for missing_index and leading_wildcard; off when\n"+
			"empty; better set by NPLUS1_INSPECT_URL or --inspect-url-file, which other\n"+
			"users' process lists do not show"),
		urlFile: fs.String("inspect-url-file", "", "read the --inspect-url from `FILE` (surrounding whitespace trimmed)"),
	}
}

// inspector builds the inspector the flags describe; nil without
// --inspect-url. Every error is a *usageError that never repeats the URL.
func (o *inspectOptions) inspector(inv *invocation) (*inspect.Inspector, error) {
	if o == nil {
		return nil, nil
	}
	url, name := *o.url, "inspect-url"
	switch {
	case url != "" && *o.urlFile != "":
		return nil, usageErrorf("--inspect-url and --inspect-url-file: give one or the other")
	case *o.urlFile != "":
		name = "inspect-url-file"
		data, err := os.ReadFile(*o.urlFile)
		if err != nil {
			return nil, o.fs.errorf(name, "%v", err)
		}
		if url = strings.TrimSpace(string(data)); url == "" {
			return nil, o.fs.errorf(name, "%s holds no connection string", *o.urlFile)
		}
	case url == "":
		return nil, nil
	}
	cfg, err := inspect.ParseURL(url)
	if err != nil {
		return nil, o.fs.errorf(name, "%v", err)
	}
	in, err := inspect.New(inspect.Options{Config: cfg, Logger: inv.logger.With("component", "inspect")})
	if err != nil {
		return nil, o.fs.errorf(name, "%v", err)
	}
	return in, nil
}

// planOf is GET /api/fingerprints/{id}/plan's source: the inspector's
// latest plan of a fingerprint.
type planOf func(id uint64) (any, bool)

// inspectorPlans adapts an inspector to planOf; nil without one.
func inspectorPlans(in *inspect.Inspector) planOf {
	if in == nil {
		return nil
	}
	return func(id uint64) (any, bool) {
		p, ok := in.Plan(id)
		return p, ok
	}
}

// servePlan is GET /api/fingerprints/{id}/plan: the generic plan the
// inspection connection took of the fingerprint (16 hex digits), when it
// was taken and the indexes it saw; 404 when there is none.
func (d *httpDeps) servePlan(w http.ResponseWriter, r *http.Request) {
	hex := r.PathValue("id")
	id, err := strconv.ParseUint(hex, 16, 64)
	if err != nil || len(hex) != 16 {
		writeText(w, http.StatusBadRequest, "the fingerprint must be 16 hex digits, as findings give it (\"fingerprint\":\"c22fd7376bdafabf\")\n")
		return
	}
	if d.plan == nil {
		writeText(w, http.StatusNotFound, "no plans: nplus1 takes them through an inspection connection, which --inspect-url sets (off by default)\n")
		return
	}
	p, ok := d.plan(id)
	if !ok {
		writeText(w, http.StatusNotFound, "no plan of this fingerprint: nplus1 inspects a query shape when it runs often (an N+1's lookup, or "+
			strconv.Itoa(detector.DefaultMissingIndexRuns)+" runs a minute) and --inspect-url is set\n")
		return
	}
	writeJSON(w, p)
}

// startInspector runs in until ctx is done; the returned function stops it
// and waits for it.
func startInspector(ctx context.Context, in *inspect.Inspector) (stop func()) {
	if in == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		in.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}
