package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestStart(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	for _, u := range []string{Superuser, UserPassword, UserMD5, UserSCRAM} {
		c, err := pgx.Connect(context.Background(), s.URL(u))
		if err != nil {
			t.Fatalf("connect as %s: %v", u, err)
		}
		var who string
		if err := c.QueryRow(context.Background(), "select current_user").Scan(&who); err != nil || who != u {
			t.Fatalf("current_user = %q, %v; want %q", who, err, u)
		}
		c.Close(context.Background())
	}
}
