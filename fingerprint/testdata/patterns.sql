-- The facts, case by case.

-- name: star
SELECT * FROM users WHERE id = 1

-- name: qualified-star
SELECT u.* FROM users u JOIN posts p ON p.user_id = u.id WHERE p.id = 7

-- name: star-over-explicit-subquery
SELECT * FROM (SELECT id, name FROM users) s

-- name: star-over-star-subquery
SELECT * FROM (SELECT * FROM users) s

-- name: star-over-cte
WITH recent AS (SELECT * FROM posts WHERE created_at > now() - interval '1 day') SELECT * FROM recent

-- name: star-over-function
SELECT * FROM generate_series(1, 10)

-- name: star-in-exists-only
SELECT id FROM users u WHERE EXISTS (SELECT * FROM posts p WHERE p.user_id = u.id)

-- name: count-star
SELECT count(*) FROM users

-- name: aggregate-expression
SELECT coalesce(max(id), 0) + 1 FROM users

-- name: aggregate-with-group-by
SELECT user_id, count(*) FROM posts GROUP BY user_id

-- name: aggregate-and-column
SELECT min(id), name FROM users

-- name: window-function
SELECT count(*) OVER () FROM users

-- name: union-star
SELECT * FROM a UNION ALL SELECT id FROM b LIMIT 10

-- name: parenthesized-union-limits
(SELECT id FROM a LIMIT 1) UNION (SELECT id FROM b LIMIT 1)

-- name: limit-in-subquery-only
SELECT id FROM users WHERE id IN (SELECT user_id FROM posts ORDER BY id LIMIT 5)

-- name: limit-all
SELECT id FROM users LIMIT ALL OFFSET 0

-- name: offset-expression
SELECT id FROM users LIMIT 10 OFFSET 10 * 3

-- name: fetch-first
SELECT id FROM users ORDER BY id OFFSET 5 ROWS FETCH FIRST 10 ROWS ONLY

-- name: whole-statement-in-parens
(SELECT id FROM users LIMIT 5)

-- name: equality-forms
SELECT id FROM users WHERE (tenant_id = $1 AND lower(email) = $2 AND $3 = org_id AND status IN ('a', 'b') AND NOT deleted AND kind <> 'x' AND role = ANY('{1,2}') AND (a, b) = (1, 2) AND c::text = $4) OR id IS NOT DISTINCT FROM $5

-- name: join-condition-is-not-equality
SELECT u.id FROM users u, posts p WHERE p.user_id = u.id AND p.id = 3

-- name: not-in
SELECT id FROM users WHERE id NOT IN (1, 2)

-- name: in-subquery
SELECT id FROM users WHERE id IN (SELECT user_id FROM bans)

-- name: like-prefix
SELECT id FROM users WHERE name LIKE 'ada%'

-- name: like-leading
SELECT id FROM users WHERE name ILIKE '%ada%'

-- name: like-leading-escape-string
SELECT id FROM users WHERE name LIKE E'\x25ada'

-- name: like-leading-underscore-dollar
SELECT id FROM users WHERE name LIKE $$_da$$

-- name: like-concat
SELECT id FROM users WHERE name LIKE '%' || $1 || '%'

-- name: like-operator
SELECT id FROM users WHERE name ~~* '%x'

-- name: like-parameter
SELECT id FROM users WHERE name LIKE $1

-- name: like-in-subquery
SELECT id FROM users WHERE id IN (SELECT user_id FROM posts WHERE title LIKE '%sql%')

-- name: column-named-like-keywords
SELECT t.limit, t.offset, 1 AS like FROM t

-- name: for-share
SELECT id FROM jobs WHERE state = 'ready' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED

-- name: for-update-of
SELECT u.id FROM users u JOIN accounts a ON a.user_id = u.id FOR UPDATE OF a

-- name: update-no-where
UPDATE users SET active = false

-- name: update-from
UPDATE users SET plan = p.name FROM plans p WHERE p.id = users.plan_id AND users.id = 5

-- name: delete-using
DELETE FROM sessions s USING users u WHERE s.user_id = u.id AND u.id = $1

-- name: insert-select
INSERT INTO archive.posts (id, title) SELECT id, title FROM public.posts WHERE created_at < '2020-01-01'

-- name: upsert
INSERT INTO counters (key, n) VALUES ('hits', 1) ON CONFLICT (key) DO UPDATE SET n = counters.n + 1

-- name: merge
MERGE INTO stock s USING deliveries d ON s.item = d.item WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty WHEN NOT MATCHED THEN INSERT VALUES (d.item, d.qty)

-- name: cte-write
WITH moved AS (DELETE FROM queue WHERE id = 1 RETURNING *) INSERT INTO done SELECT * FROM moved

-- name: select-into
SELECT * INTO backup_users FROM users

-- name: create-table-as
CREATE TABLE report AS SELECT user_id, count(*) FROM posts GROUP BY user_id

-- name: copy-from
COPY users (id, email) FROM STDIN WITH (FORMAT csv)

-- name: copy-query-to
COPY (SELECT id FROM users WHERE active) TO STDOUT

-- name: truncate
TRUNCATE sessions, public.tokens

-- name: explain
EXPLAIN ANALYZE SELECT * FROM users WHERE id = 1

-- name: set
SET statement_timeout = 5000

-- name: show
SHOW search_path

-- name: ddl
CREATE INDEX CONCURRENTLY users_email_idx ON users (lower(email))

-- name: call
CALL refresh_stats(42, 'daily')

-- name: values
VALUES (1, 'a'), (2, 'b')

-- name: typmods-and-ordinals
SELECT name::varchar(255), price::numeric(10, 2) FROM items ORDER BY 1 LIMIT 5
