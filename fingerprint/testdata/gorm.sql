-- GORM v2 with pgx: bound values, soft-delete filter, Limit/Offset inlined.

-- name: find-by-id
SELECT * FROM "users" WHERE "users"."id" = $1 AND "users"."deleted_at" IS NULL ORDER BY "users"."id" LIMIT 1

-- name: eager-load-in
SELECT * FROM "orders" WHERE "orders"."user_id" IN ($1,$2,$3) AND "orders"."deleted_at" IS NULL

-- name: join
SELECT "users"."id","users"."name","users"."company_id","Company"."id" AS "Company__id","Company"."name" AS "Company__name" FROM "users" LEFT JOIN "companies" "Company" ON "users"."company_id" = "Company"."id" AND "Company"."deleted_at" IS NULL WHERE "users"."deleted_at" IS NULL

-- name: paginated-list
SELECT * FROM "users" WHERE "users"."deleted_at" IS NULL ORDER BY created_at desc LIMIT 20 OFFSET 40

-- name: count
SELECT count(*) FROM "users" WHERE name = $1 AND "users"."deleted_at" IS NULL

-- name: soft-delete
UPDATE "users" SET "deleted_at"=$1 WHERE "users"."id" = $2 AND "users"."deleted_at" IS NULL
