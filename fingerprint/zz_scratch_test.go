package fingerprint

import (
	"encoding/json"
	"fmt"
	"testing"
)

func TestScratch(t *testing.T) {
	for _, s := range []string{
		`SELECT "User"."id", "User"."email" FROM "public"."User" AS "User" WHERE "User"."id" = $1 AND "User"."deletedAt" IS NULL LIMIT 1 OFFSET 20 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',route='%2Fusers%2F%3Aid'*/`,
		"SELECT * FROM t WHERE a IN (1,2,3) AND name LIKE '%foo'; UPDATE t SET a = 'x'; DELETE FROM u WHERE id = 5",
		"SELECT count(*) FROM t", "SELECT 'unterminated", "", "  -- c", "SELECT * FROM (SELECT a FROM t) s", "WITH x AS (SELECT * FROM t) SELECT * FROM x FOR UPDATE",
		"SELEC * FROM t WHERE a IN (1, 2, 3)", "SELEC * FROM t WHERE a IN (1, 2)",
	} {
		r := Of(s)
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Printf("%q\n%s\n", s, b)
	}
}
