-- ActiveRecord (Rails 7.1) with prepared statements and query log tags.

-- name: find-by-id
SELECT "users".* FROM "users" WHERE "users"."id" = $1 LIMIT $2 /*action='show',application='Blog',controller='users'*/

-- name: eager-load-in
SELECT "posts".* FROM "posts" WHERE "posts"."user_id" IN ($1, $2, $3) /*action='index',application='Blog',controller='users'*/

-- name: eager-load-in-unprepared
SELECT "posts".* FROM "posts" WHERE "posts"."user_id" IN (1, 2, 3)

-- name: join
SELECT "users"."id" AS t0_r0, "users"."name" AS t0_r1, "posts"."id" AS t1_r0, "posts"."title" AS t1_r1 FROM "users" LEFT OUTER JOIN "posts" ON "posts"."user_id" = "users"."id" WHERE "users"."id" = $1

-- name: paginated-list
SELECT "users".* FROM "users" ORDER BY "users"."created_at" DESC LIMIT $1 OFFSET $2 /*application:Blog,controller:users,action:index*/

-- name: count
SELECT COUNT(*) FROM "users" WHERE "users"."active" = $1

-- name: exists
SELECT 1 AS one FROM "users" WHERE "users"."email" = $1 LIMIT $2

-- name: lock
SELECT "accounts".* FROM "accounts" WHERE "accounts"."id" = $1 LIMIT $2 FOR UPDATE
