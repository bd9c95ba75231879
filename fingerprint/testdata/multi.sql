-- Texts with several statements, and texts without any.

-- name: transaction
BEGIN; UPDATE accounts SET balance = balance - 100 WHERE id = 1; UPDATE accounts SET balance = balance + 100 WHERE id = 2; COMMIT;

-- name: empty-statements
;; SELECT 1 ;; SELECT 2 ;

-- name: sql-function-body
CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT a + b; SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END; END; SELECT add(1, 2)

-- name: only-comments
-- nothing here
/* nor here */

-- name: comments-between
/* first */ SELECT 1 /* trailing */; -- line
SELECT 'two' -- end
