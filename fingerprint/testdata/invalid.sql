-- Texts that do not parse: a fallback fingerprint, kind unknown, and an
-- error that quotes nothing from the text.

-- name: typo
SELEC * FROM users WHERE email = 'ada@example.com'

-- name: typo-other-literal
SELEC * FROM users WHERE email = 'grace@example.com'

-- name: typo-in-list
SELEC * FROM users WHERE id IN (1, 2, 3)

-- name: typo-in-list-longer
SELEC * FROM users WHERE id IN (4, 5, 6, 7, 8)

-- name: unterminated-string
SELECT * FROM users WHERE password = 'hunter2

-- name: unterminated-dollar
SELECT $body$ secret

-- name: trailing-junk
SELECT 123abc

-- name: one-bad-statement
SELECT 1; SELEC 2; SELECT 3
