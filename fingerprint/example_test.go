package fingerprint_test

import (
	"fmt"

	"github.com/nplus1/nplus1/fingerprint"
)

func ExampleCache_Of() {
	cache := fingerprint.New(fingerprint.Options{})
	for _, sql := range []string{
		`SELECT * FROM "posts" WHERE "posts"."user_id" = 1 LIMIT 1 /*controller='users',action='show'*/`,
		`SELECT * FROM "posts" WHERE "posts"."user_id" = 2 LIMIT 1 /*controller='users',action='show'*/`,
	} {
		r := cache.Of(sql)
		st := r.Statements[0]
		fmt.Println(st.Hex, st.Normalized)
		fmt.Println(st.Facts.Kind, st.Facts.TablesRead, st.Facts.EqualityColumns, st.Facts.SelectStar, st.Facts.HasLimit, r.Tags["controller"])
	}
	s := cache.Stats()
	fmt.Println("text cache:", s.Hits, "hits,", s.Misses, "misses; parses:", s.Shapes.Misses)
	// Output:
	// 038cf3be24861aab SELECT * FROM "posts" WHERE "posts"."user_id" = $1 LIMIT $2
	// select [posts] [posts.user_id] true true users
	// 038cf3be24861aab SELECT * FROM "posts" WHERE "posts"."user_id" = $1 LIMIT $2
	// select [posts] [posts.user_id] true true users
	// text cache: 0 hits, 2 misses; parses: 1
}
