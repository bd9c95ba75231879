package main

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nplus1/nplus1/metrics"
)

// The web page served at / by --http: one HTML page, its script and its
// style sheet, embedded in the binary. It reads the findings API, the
// findings stream, GET /api/fingerprints and GET /api/timeline; it needs
// nothing from outside.
//
//go:embed web/index.html web/app.js web/app.css
var webFiles embed.FS

// webContentSecurityPolicy allows the page only its own script, style and
// requests: no inline script or style, no frames, no form posts, nothing
// from another origin. Every value the page shows from the API is set as
// text, never parsed as HTML.
const webContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// fingerprintSource is what GET /api/fingerprints reads: the top-K
// ranking's table (*metrics.Exporter), the one source of the
// nplus1_fingerprint_* series.
type fingerprintSource interface {
	Fingerprints() []metrics.FingerprintStats
	Evictions() uint64
}

// webDeps are the sources of the page's own API routes; a nil one leaves
// its route out.
type webDeps struct {
	fingerprints fingerprintSource // GET /api/fingerprints
	timelines    *timelineLog      // GET /api/timeline
}

// webAsset is one embedded file, ready to serve.
type webAsset struct {
	name        string
	contentType string
	etag        string
	body        []byte
}

// webAssets are the page's files by URL path.
var webAssets = loadWebAssets()

func loadWebAssets() map[string]webAsset {
	types := map[string]string{
		".html": "text/html; charset=utf-8",
		".js":   "text/javascript; charset=utf-8",
		".css":  "text/css; charset=utf-8",
	}
	out := make(map[string]webAsset)
	err := fs.WalkDir(webFiles, "web", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		body, err := webFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		name := path.Base(p)
		urlPath := "/" + name
		if name == "index.html" {
			urlPath = "/"
		}
		out[urlPath] = webAsset{name: name, contentType: types[path.Ext(name)], etag: `"` + hex.EncodeToString(sum[:8]) + `"`, body: body}
		return nil
	})
	if err != nil {
		panic("embedded web files: " + err.Error()) // cannot happen: they are compiled in
	}
	return out
}

// webRoutes adds the page, its files, GET /api/fingerprints and GET
// /api/timeline to mux. The page and its files hold no data: they are
// checked like /readyz (the Host header, against DNS rebinding) and need no
// token, which a browser could not send for a page load; the page asks for
// the token when the API answers 401 (see README, "Look at it").
func (d httpDeps) webRoutes(mux *http.ServeMux) {
	if d.findings == nil { // the page is about findings: no store, no page
		return
	}
	for p, a := range webAssets {
		if p == "/" {
			p = "/{$}"
		}
		mux.Handle("GET "+p, d.guard(accessProbe, a))
	}
	if d.web.fingerprints != nil {
		mux.Handle("GET /api/fingerprints", d.guard(accessAPI, http.HandlerFunc(d.listFingerprints)))
	}
	if d.web.timelines != nil {
		mux.Handle("GET /api/timeline", d.guard(accessAPI, http.HandlerFunc(d.web.timelines.serveTimeline)))
	}
}

// ServeHTTP serves the file with the page's security headers; it answers
// 304 to a request that has it already (If-None-Match).
func (a webAsset) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Content-Security-Policy", webContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

// fingerprintSorts are the orders of GET /api/fingerprints?sort=.
var fingerprintSorts = map[string]func(a, b *metrics.FingerprintStats) int{
	"calls":       func(a, b *metrics.FingerprintStats) int { return cmp.Compare(a.Calls, b.Calls) },
	"total_ms":    func(a, b *metrics.FingerprintStats) int { return cmp.Compare(a.TotalMS, b.TotalMS) },
	"mean_ms":     func(a, b *metrics.FingerprintStats) int { return cmp.Compare(a.MeanMS, b.MeanMS) },
	"p95_ms":      func(a, b *metrics.FingerprintStats) int { return cmp.Compare(a.P95MS, b.P95MS) },
	"rows":        func(a, b *metrics.FingerprintStats) int { return cmp.Compare(a.Rows, b.Rows) },
	"errors":      func(a, b *metrics.FingerprintStats) int { return cmp.Compare(a.Errors, b.Errors) },
	"findings":    func(a, b *metrics.FingerprintStats) int { return cmp.Compare(a.Findings, b.Findings) },
	"query":       func(a, b *metrics.FingerprintStats) int { return strings.Compare(a.Query, b.Query) },
	"command":     func(a, b *metrics.FingerprintStats) int { return strings.Compare(a.Command, b.Command) },
	"fingerprint": func(a, b *metrics.FingerprintStats) int { return strings.Compare(a.Fingerprint, b.Fingerprint) },
}

// fingerprintList is the answer of GET /api/fingerprints.
type fingerprintList struct {
	// Tracked is how many fingerprints the ranking tracks, Matched how
	// many of them ?q= kept (the list is cut to ?limit=); Evictions how many
	// the ranking forgot for its bound.
	Tracked      int                        `json:"tracked"`
	Matched      int                        `json:"matched"`
	Evictions    uint64                     `json:"evictions"`
	Fingerprints []metrics.FingerprintStats `json:"fingerprints"`
}

// listFingerprints answers GET /api/fingerprints: the per-fingerprint
// numbers of the metrics' top-K ranking: ?q= those whose normalized query
// holds the text (in any case), ?sort= one of fingerprintSorts (total_ms by
// default), ?order=asc or desc (the default), ?limit= at most that many.
func (d httpDeps) listFingerprints(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	key := cmp.Or(q.Get("sort"), "total_ms")
	by, ok := fingerprintSorts[key]
	if !ok {
		keys := slices.Sorted(maps.Keys(fingerprintSorts))
		writeText(w, http.StatusBadRequest, fmt.Sprintf("sort: unknown key %q; want one of %s\n", key, strings.Join(keys, ", ")))
		return
	}
	desc := true
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		desc = false
	default:
		writeText(w, http.StatusBadRequest, "order: want asc or desc\n")
		return
	}
	limit := -1
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeText(w, http.StatusBadRequest, "limit: want a whole number, 0 or more (100)\n")
			return
		}
		limit = n
	}
	fps := d.web.fingerprints.Fingerprints()
	tracked := len(fps)
	if text := strings.ToLower(q.Get("q")); text != "" {
		fps = slices.DeleteFunc(fps, func(s metrics.FingerprintStats) bool {
			return !strings.Contains(strings.ToLower(s.Query), text)
		})
	}
	slices.SortStableFunc(fps, func(a, b metrics.FingerprintStats) int {
		c := by(&a, &b)
		if desc {
			c = -c
		}
		return cmp.Or(c, strings.Compare(a.Fingerprint, b.Fingerprint))
	})
	out := fingerprintList{Tracked: tracked, Matched: len(fps), Evictions: d.web.fingerprints.Evictions(), Fingerprints: fps}
	if limit >= 0 && limit < len(fps) {
		out.Fingerprints = fps[:limit]
	}
	writeJSON(w, out)
}
