package fingerprint

// The tests that hold results to pg_query's reading of a text, which is
// with standard_conforming_strings on, read texts with that setting.

func ofOn(sql string) *Result { return OfStrings(sql, StringsStandard) }

func (c *Cache) ofOn(sql string) *Result { return c.OfStrings(sql, StringsStandard) }
