package fingerprint

import (
	"fmt"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

func TestScratch(t *testing.T) {
	for _, s := range []string{"SELECT 1$", "SELECT 1$1", "SELECT 1.5$1", "SELECT 0E0$1", "SELECT 1e5$", "SELECT 0x1$", "SELECT 1.5$", "SELECT .5$","SELECT 1_$", "SELECT 1.5_"} {
		sc, serr := pg_query.Scan(s)
		fmt.Printf("%q → scanerr=%v\n", s, serr)
		for _, tk := range sc.GetTokens() {
			fmt.Printf("   %d-%d %v %q\n", tk.Start, tk.End, tk.Token, s[tk.Start:tk.End])
		}
	}
}
