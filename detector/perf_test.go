package detector

import (
	"reflect"
	"strings"
	"testing"
)

// isCatalogByName is isCatalog as the name normTable writes reads.
func isCatalogByName(name string) bool { return isCatalogNorm(normTable(name)) }

func TestTableNamesWithoutNormalizing(t *testing.T) {
	names := []string{
		"users", "public.users", `"Users"`, `"public"."Users"`, "PG_CATALOG.pg_class",
		`"pg_catalog"."pg_type"`, "pg_class", "PG_STAT_ACTIVITY", "information_schema.tables",
		`"INFORMATION_SCHEMA"."columns"`, "information_schema", "pg_catalog", "pg", "p", "",
		`""`, `"pg_"x`, `p"g_x`, "app.pg_notes", "app.pgnotes", "a.b.pg_x", "pg_catalog.",
		// Non-ASCII: İ and the Kelvin sign lower-case to ASCII letters.
		"İnformation_schema.tables", "PG_CATALOG.\u212Aeys", "\u212Aeys", "pg_caté", "Ünïcode.pg_ß",
		"\xffpg_x", "pg_\xff",
	}
	for _, a := range names {
		if got, want := isCatalog(a), isCatalogByName(a); got != want {
			t.Errorf("isCatalog(%q) = %v, want %v", a, got, want)
		}
		for _, b := range names {
			if got, want := sameNorm(a, b), normTable(a) == normTable(b); got != want {
				t.Errorf("sameNorm(%q, %q) = %v, want %v", a, b, got, want)
			}
		}
		up := strings.ToUpper(a)
		if got, want := sameNorm(a, up), normTable(a) == normTable(up); got != want {
			t.Errorf("sameNorm(%q, %q) = %v, want %v", a, up, got, want)
		}
	}
	if !isCatalog(`"PG_Catalog".users`) || isCatalog(`"app"."users"`) {
		t.Error("quoted schema names not read as normTable writes them")
	}
}

func TestTableNamesDoNotAllocate(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		_ = isCatalog(`"Public"."Orders"`)
		_ = sameNorm(`"Public"."Orders"`, "public.orders")
	})
	if n != 0 {
		t.Errorf("%v allocations per run", n)
	}
}

// innerLoopFirst is a nested loop whose inner shape (products) ran once
// before the outer loop (items), for an earlier request: loopsOf first
// takes products for a loop on repetition alone, and proves it only once
// items is known to be a loop.
func innerLoopFirst() *timeline {
	tl := newTimeline()
	tl.lookup(qProduct, 7)
	ordersItemsProducts(tl)
	return tl
}

// TestEvidenceKeptFromLoopsOf: what the rules take from the searches of
// loopsOf is what a new search finds, also for a loop that loopsOf
// searched before the loop it is proven by was known.
func TestEvidenceKeptFromLoopsOf(t *testing.T) {
	tl := innerLoopFirst()
	d := New(Config{})
	for _, ev := range tl.events {
		if fs := d.Observe(ev); len(fs) > 0 {
			t.Fatalf("window closed early: %v", summaries(fs))
		}
	}
	var g *group
	for _, gr := range d.groups.All {
		g = gr
	}
	w := g.win
	d.loopsOf(g, w)
	loops := 0
	for _, s := range w.shapes {
		if !s.loop {
			continue
		}
		loops++
		ev, src, rows, ok := d.evidenceOf(w, s)
		fev, fsrc, frows, fok := d.loopEvidence(w, s)
		if !reflect.DeepEqual(ev, fev) || src != fsrc || rows != frows || ok != fok {
			t.Errorf("%s: kept %+v %v, searched %+v %v", names[s.stmt.Hex], ev, ok, fev, fok)
		}
		if !ok {
			t.Errorf("%s: not proven", names[s.stmt.Hex])
		}
	}
	if loops != 2 {
		t.Errorf("%d loops, want items and products", loops)
	}

	fs := nPlusOnes(detect(Config{}, tl.events))
	if len(fs) != 2 {
		t.Fatalf("got %v", summaries(fs))
	}
	for _, f := range fs {
		if ev := f.Evidence; names[f.Fingerprint] == "product" && (ev.Kind != EvidenceDataFlow || ev.SourceFingerprint != qItems.Hex) {
			t.Errorf("%s: evidence %+v", summary(f), ev)
		}
	}
}

// TestReportedTagsAreCopies: a finding's tags are its own, and name its
// location, whether it was reported at once or held for an inspection.
func TestReportedTagsAreCopies(t *testing.T) {
	tl := newTimeline()
	tl.tags = map[string]string{"route": "/orders/:id", "framework": "express"}
	tl.q(qOrders, 1, 10)
	tl.loop(qUser, 6, 1, 0)
	fs := detect(Config{}, tl.events)
	if len(fs) == 0 {
		t.Fatal("no finding")
	}
	for _, f := range fs {
		if f.Location == nil || f.Location.Route != "/orders/:id" {
			t.Errorf("%s: location %v", summary(f), f.Location)
		}
		f.Tags["route"] = "changed"
	}
	if tl.tags["route"] != "/orders/:id" {
		t.Error("a finding's tags are the event's map")
	}
	if fs[0].Tags["route"] != "changed" || len(fs) > 1 && fs[1].Tags["route"] != "/orders/:id" {
		t.Error("findings share their tags")
	}
}
