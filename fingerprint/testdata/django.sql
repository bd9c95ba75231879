-- Django 5 with psycopg2: parameters interpolated on the client.

-- name: find-by-id
SELECT "blog_post"."id", "blog_post"."title", "blog_post"."author_id", "blog_post"."created" FROM "blog_post" WHERE "blog_post"."id" = 42 LIMIT 21

-- name: eager-load-in
SELECT "blog_comment"."id", "blog_comment"."post_id", "blog_comment"."body" FROM "blog_comment" WHERE "blog_comment"."post_id" IN (1, 2, 3)

-- name: join
SELECT "blog_post"."id", "blog_post"."title", "auth_user"."id", "auth_user"."username" FROM "blog_post" INNER JOIN "auth_user" ON ("blog_post"."author_id" = "auth_user"."id") WHERE "blog_post"."id" = 42 LIMIT 21

-- name: paginated-list
SELECT "blog_post"."id", "blog_post"."title" FROM "blog_post" ORDER BY "blog_post"."created" DESC LIMIT 20 OFFSET 40

-- name: count
SELECT COUNT(*) AS "__count" FROM "blog_post" WHERE "blog_post"."published"

-- name: icontains
SELECT "blog_post"."id", "blog_post"."title" FROM "blog_post" WHERE UPPER("blog_post"."title"::text) LIKE UPPER('%django%')

-- name: delete-all
DELETE FROM "blog_comment"
