package inspect

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nplus1/nplus1/internal/netreason"
)

// connectReason says in words why the inspection connection failed: the
// server's own error (a refused login, an unknown database, missing
// privileges) with its SQLSTATE, or the kind of network failure. It never
// holds the password: the server never repeats one, and the connection
// string is never quoted.
func connectReason(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "28P01":
			return fmt.Sprintf("login refused: password authentication failed (SQLSTATE %s)", pg.Code)
		case "28000":
			return fmt.Sprintf("login refused: %s (SQLSTATE %s)", pg.Message, pg.Code)
		}
		return fmt.Sprintf("%s (SQLSTATE %s)", pg.Message, pg.Code)
	}
	if err == nil {
		return "closed"
	}
	return netreason.Of(err)
}
