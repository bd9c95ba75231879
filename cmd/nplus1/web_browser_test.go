package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/shop"
)

// The page at / in a real browser: headless Chromium (Debian's chromium,
// which scripts/deps.sh installs) driven over the DevTools protocol,
// against the real proxy and a real PostgreSQL.

// screenshotDir is where the tests write their screenshots: the directory
// NPLUS1_SCREENSHOTS names, relative to the repository's root (docs, to
// refresh the README's), or a temporary one.
func screenshotDir(t *testing.T) string {
	if dir := os.Getenv("NPLUS1_SCREENSHOTS"); dir != "" {
		if !filepath.IsAbs(dir) {
			dir = filepath.Join("..", "..", dir) // go test runs in cmd/nplus1
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// newBrowser starts headless Chromium for the test and returns a context
// of one tab in it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("headless Chromium is needed (scripts/deps.sh installs Debian's chromium): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests may run as root, where Chromium's sandbox refuses to start
		chromedp.WindowSize(1360, 860),
		chromedp.Flag("disable-gpu", true), // software rendering: no GPU process on a machine without one
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// browse runs browser actions with a deadline.
func browse(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// evalJS evaluates a JavaScript expression in the page, awaiting a promise.
func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("browser: evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls the expression until it is true; it fails the test after
// limit.
func waitFor(t *testing.T, ctx context.Context, expr string, limit time.Duration) {
	t.Helper()
	if !waitUntil(t, ctx, expr, limit) {
		t.Fatalf("browser: %s still false after %v", expr, limit)
	}
}

// waitUntil polls the expression until it is true, for at most limit, and
// reports whether it became true.
func waitUntil(t *testing.T, ctx context.Context, expr string, limit time.Duration) bool {
	t.Helper()
	for start := time.Now(); time.Since(start) <= limit; time.Sleep(20 * time.Millisecond) {
		if evalJS[bool](t, ctx, "!!("+expr+")") {
			return true
		}
	}
	return false
}

// allowClipboard lets the page at origin use the clipboard without a
// prompt, so that the test can read what its copy buttons copied.
func allowClipboard(t *testing.T, ctx context.Context, origin string) {
	t.Helper()
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		_, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: name}, Setting: browser.PermissionSettingGranted, Origin: origin,
		})
		if err != nil {
			t.Fatalf("browser: allow %s: %v", name, err)
		}
	}
}

// screenshot writes the browser's viewport to dir/name.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	// From the top, without the passing notice of a copy button.
	evalJS[bool](t, ctx, `(window.scrollTo(0, 0), document.getElementById('detail').scrollTop = 0, document.getElementById('toast').hidden = true)`)
	png := evalShot(t, ctx)
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func evalShot(t *testing.T, ctx context.Context) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("browser: screenshot: %v", err)
	}
	return png
}

// setFilter sets a filter's value as a user would: change for a select,
// input for the search box.
func setFilter(t *testing.T, ctx context.Context, id, value string) {
	t.Helper()
	event := "change"
	if strings.HasSuffix(id, "-text") {
		event = "input"
	}
	js := fmt.Sprintf(`(() => { const e = document.getElementById(%q); e.value = %q; e.dispatchEvent(new Event(%q)); return e.value; })()`, id, value, event)
	if got := evalJS[string](t, ctx, js); got != value {
		t.Fatalf("filter %s: set %q, the page holds %q (not an option?)", id, value, got)
	}
}

// rowsText returns the text of the findings list's rows, by cell.
func rowsText(t *testing.T, ctx context.Context) [][]string {
	t.Helper()
	return evalJS[[][]string](t, ctx, `[...document.querySelectorAll('#findings tr')].map(tr => [...tr.cells].map(td => td.textContent))`)
}

func TestWebPageInBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)
	setup, err := pgx.Connect(ctx, pg.URL(pgtest.Superuser))
	if err != nil {
		t.Fatal(err)
	}
	if err := shop.Load(ctx, setup); err != nil {
		t.Fatal(err)
	}
	setup.Close(ctx)

	rctx, stop := context.WithCancel(ctx)
	defer stop()
	env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser)}
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--shutdown-timeout", "5s"}
	addrs, _, done := startCommand(t, rctx, args, env, &strings.Builder{}, "proxy", "http")
	base := "http://" + addrs["http"]
	shots := screenshotDir(t)
	scenarios := map[string]shop.Scenario{}
	for _, sc := range shop.Scenarios() {
		scenarios[sc.Name] = sc
	}

	b := newBrowser(t)
	browse(t, b, "open the page", chromedp.Navigate(base+"/"))
	waitFor(t, b, `document.getElementById('status').dataset.state === 'live'`, 10*time.Second)

	// The N+1 appears within 2 s of its window closing.
	c, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, "application_name=shop-api"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := scenarios["n_plus_one"].Bad(ctx, c); err != nil {
		t.Fatal(err)
	}
	ended := time.Now()
	waitFor(t, b, `document.querySelector('#findings tr.finding[data-kind="n_plus_one"]')`, 5*time.Second)
	// The window closes one idle gap (100 ms) after its last statement.
	shown := time.Since(ended)
	t.Logf("the N+1 was on the page %v after its last statement (window closed ~100 ms after it)", shown.Round(time.Millisecond))
	if shown > 2*time.Second+100*time.Millisecond {
		t.Errorf("the N+1 appeared %v after its last statement, want within 2 s of its window closing", shown)
	}

	// The Queries tab's count follows.
	waitFor(t, b, `document.getElementById('count-queries').textContent === '2'`, 5*time.Second)
	// Its detail: the source, the repeated query, the fix.
	browse(t, b, "open the finding", chromedp.Click(chromedp.CSS(`#findings tr.finding[data-kind="n_plus_one"]`)))
	waitFor(t, b, `!document.getElementById('detail').hidden`, 5*time.Second)
	detail := evalJS[map[string]string](t, b, `({source: document.getElementById('detail-source').textContent,
		query: document.getElementById('detail-query').textContent,
		fix: document.getElementById('fix').textContent,
		meta: document.getElementById('meta').textContent,
		explain: document.getElementById('explain-note').textContent})`)
	if !strings.Contains(detail["source"], "FROM orders") || !strings.Contains(detail["source"], "returned 20 rows") {
		t.Errorf("detail source %q, want the orders query that returned 20 rows", detail["source"])
	}
	if !strings.Contains(detail["query"], "FROM users WHERE id = $1") || !strings.Contains(detail["query"], "20 executions") {
		t.Errorf("detail query %q, want the users lookup, 20 executions", detail["query"])
	}
	if !strings.Contains(detail["fix"], "= ANY($1)") {
		t.Errorf("detail fix %q, want the batched lookup", detail["fix"])
	}
	if !strings.Contains(detail["meta"], "shop-api") || !strings.Contains(detail["meta"], pgtest.Superuser) {
		t.Errorf("detail meta %q, want the application and the user", detail["meta"])
	}
	if !strings.Contains(detail["explain"], "--inspect-url") {
		t.Errorf("EXPLAIN note %q, want how to enable it (--inspect-url)", detail["explain"])
	}
	// Without an inspection connection, EXPLAIN says why there is no plan.
	browse(t, b, "ask for the plan", chromedp.Click(chromedp.CSS(`#explain`)))
	waitFor(t, b, `document.getElementById('explain-note').textContent.startsWith('no plans')`, 5*time.Second)
	if note := evalJS[string](t, b, `document.getElementById('explain-note').textContent`); !strings.Contains(note, "--inspect-url") {
		t.Errorf("EXPLAIN without an inspection connection: note %q, want the reason naming --inspect-url", note)
	}
	// The copy buttons: the fix's SQL, and the finding as JSON.
	allowClipboard(t, b, base)
	browse(t, b, "copy the fix's SQL", chromedp.Click(chromedp.CSS(`#fix button.copy`)))
	if got := evalJS[string](t, b, `navigator.clipboard.readText()`); got != "WHERE id = ANY($1)" {
		t.Errorf("the fix's copy button copied %q, want its SQL", got)
	}
	browse(t, b, "copy the finding", chromedp.Click(chromedp.CSS(`#copy-finding`)))
	var copied detector.Finding
	if err := json.Unmarshal([]byte(evalJS[string](t, b, `navigator.clipboard.readText()`)), &copied); err != nil ||
		copied.Kind != detector.KindNPlusOne || copied.Source == nil || copied.Count != 20 {
		t.Errorf("Copy as JSON copied %+v (%v), want the N+1", copied, err)
	}

	// Its window's timeline: the source, then the loop as one run.
	waitFor(t, b, `document.querySelector('#timeline .tl-row.repeat')`, 5*time.Second)
	timeline := evalJS[[][]string](t, b, `[...document.querySelectorAll('#timeline .tl-row')].map(r => [r.className, r.querySelector('.tl-label').textContent])`)
	var sawSource bool
	for _, r := range timeline {
		switch {
		case strings.Contains(r[0], "source") && strings.Contains(r[1], "FROM orders"):
			sawSource = true
		case strings.Contains(r[0], "repeat"):
			if !sawSource || r[1] != "20 × SELECT name, email FROM users WHERE id = $1" {
				t.Errorf("timeline %q: want the source, then the 20 lookups as one run", timeline)
			}
		}
	}
	screenshot(t, b, shots, "web-finding.png")

	// The queries table: the counts of the workload, the same as the API's.
	browse(t, b, "open the queries", chromedp.Click(chromedp.CSS(`#tab-queries`)))
	lookup := webFingerprintOf(t, base, "SELECT name, email FROM users WHERE id = $1")
	rowSel := fmt.Sprintf(`document.querySelector('#queries tr[data-fingerprint="%s"]')`, lookup.Fingerprint)
	waitFor(t, b, rowSel, 5*time.Second)
	cells := evalJS[[]string](t, b, `[...`+rowSel+`.cells].map(td => td.textContent)`)
	if lookup.Calls != 20 || lookup.Findings != 1 || lookup.Rows != 20 {
		t.Errorf("GET /api/fingerprints: the lookup has %d calls, %d rows, %d findings; want 20, 20, 1", lookup.Calls, lookup.Rows, lookup.Findings)
	}
	if len(cells) != 9 || cells[2] != "20" || cells[6] != "20" || cells[8] != "1" || cells[7] != "0" {
		t.Errorf("the lookup's row reads %q, want 20 calls, 20 rows, 0 errors, 1 finding", cells)
	}
	// Sorting by calls puts the lookup (20 calls) first.
	browse(t, b, "sort by calls", chromedp.Click(chromedp.CSS(`.queries th[data-sort="calls"]`)))
	waitFor(t, b, `document.querySelector('.queries th[data-sort="calls"]').getAttribute('aria-sort') === 'descending' &&
		document.querySelector('#queries tr').dataset.fingerprint === '`+lookup.Fingerprint+`'`, 5*time.Second)
	screenshot(t, b, shots, "web-queries.png")
	browse(t, b, "back to the findings", chromedp.Click(chromedp.CSS(`#tab-findings`)))

	// More kinds; the filters narrow the list.
	for _, name := range []string{"unpaginated", "select_star", "duplicate_query"} {
		time.Sleep(shop.Pause)
		if err := scenarios[name].Bad(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, b, `document.querySelector('#findings tr.finding[data-kind="duplicate_query"]') &&
		document.querySelector('#findings tr.finding[data-kind="unpaginated"]')`, 5*time.Second)
	if !evalJS[bool](t, b, `document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'})) && document.getElementById('detail').hidden`) {
		t.Error("Escape did not close the detail")
	}
	screenshot(t, b, shots, "web-findings.png")
	all := len(rowsText(t, b))
	setFilter(t, b, "f-kind", "n_plus_one")
	if rows := rowsText(t, b); len(rows) != 1 || rows[0][2] != "N+1" {
		t.Errorf("kind filter n_plus_one: rows %q, want the one N+1", rows)
	}
	setFilter(t, b, "f-kind", "")
	setFilter(t, b, "f-app", "shop-api")
	if n := len(rowsText(t, b)); n != all {
		t.Errorf("application filter shop-api: %d rows, want all %d", n, all)
	}
	setFilter(t, b, "f-table", "products")
	for _, r := range rowsText(t, b) {
		if !strings.Contains(r[4], "products") {
			t.Errorf("table filter products: row %q", r)
		}
	}
	setFilter(t, b, "f-table", "")
	setFilter(t, b, "f-text", "ORDER_ITEMS")
	rows := rowsText(t, b)
	if len(rows) == 0 || len(rows) == all {
		t.Errorf("search order_items: %d of %d rows, want some but not all", len(rows), all)
	}
	for _, r := range rows {
		if !strings.Contains(strings.ToLower(r[4]), "order_items") {
			t.Errorf("search order_items: row %q", r)
		}
	}
	setFilter(t, b, "f-text", "")
	setFilter(t, b, "f-app", "")

	// A planted script in an application name and in a query is text.
	plantApp := `<img src=x onerror=window.pwned=1>`
	plantCol := `<script>window.pwned=2</script>`
	pc, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, "application_name="+strings.ReplaceAll(url.QueryEscape(plantApp), "+", "%20")))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	time.Sleep(shop.Pause)
	for id := 1; id <= 8; id++ {
		var v string
		if err := pc.QueryRow(ctx, `SELECT email AS "`+plantCol+`" FROM users WHERE id = $1`, id).Scan(&v); err != nil {
			t.Fatal(err)
		}
	}
	planted := `[...document.querySelectorAll('#findings tr.finding')].find(tr => tr.querySelector('.app').textContent === ` + jsString(plantApp) + `)`
	if !waitUntil(t, b, planted, 5*time.Second) {
		var got []string
		for _, f := range getFindings(t, base+"/api/findings") {
			got = append(got, fmt.Sprintf("%s %q %q", f.Kind, f.ApplicationName, f.Query))
		}
		t.Fatalf("no finding of the planted application; the API has %q", got)
	}
	evalJS[bool](t, b, `(`+planted+`.click(), true)`)
	waitFor(t, b, `document.getElementById('detail-query').textContent.includes(`+jsString(plantCol)+`)`, 5*time.Second)
	type pageState struct {
		Pwned   any    `json:"pwned"`
		Imgs    int    `json:"imgs"`
		Scripts int    `json:"scripts"`
		Text    string `json:"text"`
	}
	page := evalJS[pageState](t, b, `({pwned: window.pwned === undefined ? null : window.pwned, imgs: document.images.length,
		scripts: document.scripts.length, text: document.body.innerText})`)
	if page.Pwned != nil || page.Imgs != 0 || page.Scripts != 1 {
		t.Errorf("the planted markup ran or became elements: pwned %v, %d images, %d scripts (want 0 and 1)", page.Pwned, page.Imgs, page.Scripts)
	}
	if !strings.Contains(page.Text, plantApp) || !strings.Contains(page.Text, plantCol) {
		t.Errorf("the planted names are not shown as text")
	}

	// Clear empties the page and the store.
	browse(t, b, "clear", chromedp.Click(chromedp.CSS(`#clear`)))
	waitFor(t, b, `document.querySelectorAll('#findings tr').length === 0 && !document.getElementById('findings-empty').hidden`, 5*time.Second)
	if fs := getFindings(t, base+"/api/findings"); len(fs) != 0 {
		t.Errorf("after Clear the API holds %d findings, want 0", len(fs))
	}
	// And the page goes on showing new ones.
	time.Sleep(shop.Pause)
	if err := scenarios["n_plus_one"].Bad(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitFor(t, b, `document.querySelectorAll('#findings tr.finding[data-kind="n_plus_one"]').length === 1`, 5*time.Second)

	stop()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return 30s after it was stopped")
	}
}

// fingerprintOf returns GET /api/fingerprints's entry for the query.
func webFingerprintOf(t *testing.T, base, query string) webFingerprint {
	t.Helper()
	var list struct{ Fingerprints []webFingerprint }
	getJSON(t, base+"/api/fingerprints", &list)
	for _, fp := range list.Fingerprints {
		if fp.Query == query {
			return fp
		}
	}
	t.Fatalf("GET /api/fingerprints has no %q: %+v", query, list.Fingerprints)
	return webFingerprint{}
}

// webFingerprint is the part of a GET /api/fingerprints entry the tests read.
type webFingerprint struct {
	Fingerprint, Query            string
	Calls, Rows, Errors, Findings uint64
}

func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", url, res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// With --http-token, the page asks for the token, keeps it in the tab's
// sessionStorage and sends it as a bearer token, the stream included.
func TestWebPageAsksForTheToken(t *testing.T) {
	const token = "tok-for-the-page"
	th := startTestHTTP(t, "127.0.0.1:0", httpDeps{token: token, web: webDeps{fingerprints: testFingerprints}})
	th.store.Finding(&detector.Finding{Kind: detector.KindNPlusOne, Severity: detector.SeverityWarning, Query: "SELECT 1 FROM users WHERE id = $1",
		Time: time.Now(), WindowStart: time.Now(), WindowEnd: time.Now(), Count: 9})
	b := newBrowser(t)
	browse(t, b, "open the page", chromedp.Navigate(th.base+"/"))
	waitFor(t, b, `!document.getElementById('token-form').hidden`, 5*time.Second)
	if rows := rowsText(t, b); len(rows) != 0 {
		t.Errorf("without the token the page shows %q", rows)
	}

	submit := func(tok string) {
		t.Helper()
		browse(t, b, "type the token", chromedp.SendKeys(chromedp.ID("token-input"), tok), chromedp.Click(chromedp.CSS(`#token button`)))
	}
	submit("wrong")
	waitFor(t, b, `!document.getElementById('token-form').hidden && document.getElementById('token-error').textContent.includes('refused')`, 5*time.Second)
	submit(token)
	waitFor(t, b, `document.querySelectorAll('#findings tr.finding').length === 1 && document.getElementById('status').dataset.state === 'live' &&
		document.getElementById('count-queries').textContent === '3'`, 5*time.Second)
	if got := evalJS[string](t, b, `sessionStorage.getItem('nplus1.token')`); got != token {
		t.Errorf("sessionStorage holds %q, want the token", got)
	}
	// The stream carries the token too: a new finding arrives live.
	th.store.Finding(&detector.Finding{Kind: detector.KindSelectStar, Severity: detector.SeverityInfo, Query: "SELECT * FROM orders", Time: time.Now()})
	waitFor(t, b, `document.querySelectorAll('#findings tr.finding').length === 2`, 5*time.Second)

	// A reload in the same tab does not ask again.
	browse(t, b, "reload", chromedp.Reload())
	waitFor(t, b, `document.querySelectorAll('#findings tr.finding').length === 2`, 5*time.Second)
	if hidden := evalJS[bool](t, b, `document.getElementById('token-form').hidden`); !hidden {
		t.Error("the page asked for the token again after a reload")
	}
}
