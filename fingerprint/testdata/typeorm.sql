-- TypeORM 0.3 with the pg driver: values are bound ($n), take/skip are inlined.

-- name: find-by-id
SELECT "User"."id" AS "User_id", "User"."email" AS "User_email", "User"."name" AS "User_name", "User"."createdAt" AS "User_createdAt" FROM "user" "User" WHERE (("User"."id" = $1)) LIMIT 1

-- name: eager-load-in
SELECT "Post"."id" AS "Post_id", "Post"."title" AS "Post_title", "Post"."authorId" AS "Post_authorId" FROM "post" "Post" WHERE "Post"."authorId" IN ($1, $2, $3)

-- name: join
SELECT "User"."id" AS "User_id", "User"."email" AS "User_email", "User__User_posts"."id" AS "User__User_posts_id", "User__User_posts"."title" AS "User__User_posts_title" FROM "user" "User" LEFT JOIN "post" "User__User_posts" ON "User__User_posts"."authorId"="User"."id" WHERE ( "User"."id" = $1 )

-- name: paginated-list
SELECT "User"."id" AS "User_id", "User"."email" AS "User_email" FROM "user" "User" ORDER BY "User"."createdAt" DESC LIMIT 20 OFFSET 40

-- name: paginated-join-distinct
SELECT DISTINCT "distinctAlias"."User_id" AS "ids_User_id", "distinctAlias"."User_createdAt" FROM (SELECT "User"."id" AS "User_id", "User"."createdAt" AS "User_createdAt", "User__User_posts"."id" AS "User__User_posts_id" FROM "user" "User" LEFT JOIN "post" "User__User_posts" ON "User__User_posts"."authorId"="User"."id") "distinctAlias" ORDER BY "distinctAlias"."User_createdAt" DESC, "User_id" ASC LIMIT 20 OFFSET 100

-- name: count
SELECT COUNT(DISTINCT("User"."id")) AS "cnt" FROM "user" "User" WHERE "User"."active" = $1

-- name: insert-returning
INSERT INTO "user"("email", "name", "createdAt") VALUES ($1, $2, DEFAULT) RETURNING "id", "createdAt"
