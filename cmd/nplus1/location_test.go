package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/shop"
)

// TestFindingLocationFromSqlcommenter runs an N+1 through the proxy with the
// comment each framework's sqlcommenter support appends (the formats their
// documentation gives), and checks that the finding leads with the code
// location: the JSON "location", and the console block's "at:" line.
func TestFindingLocationFromSqlcommenter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := startPostgres(t, ctx, shop.Schema)

	rctx, stop := context.WithCancel(ctx)
	defer stop()
	env := map[string]string{"NPLUS1_LOG_FORMAT": "json", "NPLUS1_UPSTREAM": pg.URL(pgtest.Superuser)}
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--shutdown-timeout", "5s"}
	addrs, _, done := startCommand(t, rctx, args, env, &bytes.Buffer{}, "proxy", "http")

	for _, tc := range []struct {
		app, comment string
		want         detector.Location
		at           string // the console's at: line
	}{
		// Rails 7.1+ QueryLogs with query_log_tags_format = :sqlcommenter.
		{"rails", "/*action='index',application='Shop',controller='orders',framework='rails'*/",
			detector.Location{Controller: "orders", Action: "index", Framework: "rails"}, "controller orders#index"},
		// Django with google-cloud-sqlcommenter's middleware (values URL-encoded).
		{"django", "/*controller='order_list',db_driver='django.db.backends.postgresql',framework='django%3A5.1',route='%5Eorders%2F%24'*/",
			detector.Location{Route: "^orders/$", Controller: "order_list", Framework: "django:5.1"}, "route ^orders/$, controller order_list"},
		// Express or Prisma query tags: a route.
		{"express", "/*framework='express',route='%2Fapi%2Forders%2F%3Aid'*/",
			detector.Location{Route: "/api/orders/:id", Framework: "express"}, "route /api/orders/:id"},
		// A Rails background job.
		{"job", "/*application='Shop',job='ReceiptJob'*/",
			detector.Location{Job: "ReceiptJob"}, "job ReceiptJob"},
	} {
		c, err := pgx.Connect(ctx, pgtest.URLFor(addrs["proxy"], pgtest.Superuser, "application_name="+tc.app))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := c.Query(ctx, "SELECT id, user_id FROM orders WHERE status = 'open' ORDER BY id LIMIT 8 "+tc.comment)
		if err != nil {
			t.Fatal(err)
		}
		var uids []int64
		for rows.Next() {
			var id, uid int64
			if err := rows.Scan(&id, &uid); err != nil {
				t.Fatal(err)
			}
			uids = append(uids, uid)
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		for _, uid := range uids {
			var name string
			if err := c.QueryRow(ctx, "SELECT name FROM users WHERE id = $1 "+tc.comment, uid).Scan(&name); err != nil {
				t.Fatal(err)
			}
		}
		c.Close(ctx)

		f := waitFinding(t, "http://"+addrs["http"]+"/api/findings?kind=n_plus_one", tc.app)
		if f.Location == nil || *f.Location != tc.want {
			t.Errorf("%s: location %+v, want %+v", tc.app, f.Location, tc.want)
		}
		if got := f.Location.String(); got != tc.at {
			t.Errorf("%s: the console's at: line would read %q, want %q", tc.app, got, tc.at)
		}
	}
	stop()
	<-done
}

// waitFinding polls url until a finding of application app is listed.
func waitFinding(t *testing.T, url, app string) detector.Finding {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		var fs []detector.Finding
		err = json.NewDecoder(res.Body).Decode(&fs)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if f.ApplicationName == app {
				return f
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal(fmt.Sprintf("no n_plus_one of application %s", app))
	return detector.Finding{}
}
