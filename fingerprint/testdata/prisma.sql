-- Prisma 5: everything bound, schema-qualified names, relation loads with IN.

-- name: find-by-id
SELECT "public"."User"."id", "public"."User"."email", "public"."User"."name", "public"."User"."createdAt" FROM "public"."User" WHERE ("public"."User"."id" = $1 AND 1=1) LIMIT $2 OFFSET $3

-- name: eager-load-in
SELECT "public"."Post"."id", "public"."Post"."title", "public"."Post"."authorId" FROM "public"."Post" WHERE "public"."Post"."authorId" IN ($1,$2,$3,$4,$5) OFFSET $6

-- name: join-lateral
SELECT "t1"."id", "t1"."email", "User_posts"."__prisma_data__" AS "posts" FROM "public"."User" AS "t1" LEFT JOIN LATERAL (SELECT COALESCE(JSONB_AGG("__prisma_data__"), '[]') AS "__prisma_data__" FROM (SELECT "t4"."__prisma_data__" FROM (SELECT JSONB_BUILD_OBJECT('id', "t3"."id", 'title', "t3"."title") AS "__prisma_data__" FROM (SELECT "t2".* FROM "public"."Post" AS "t2" WHERE "t1"."id" = "t2"."authorId") AS "t3") AS "t4") AS "t5") AS "User_posts" ON true WHERE "t1"."id" = $1 LIMIT $2

-- name: paginated-list
SELECT "public"."User"."id", "public"."User"."email" FROM "public"."User" WHERE 1=1 ORDER BY "public"."User"."id" ASC LIMIT $1 OFFSET $2

-- name: count
SELECT COUNT(*) AS "_count._all" FROM (SELECT "public"."User"."id" FROM "public"."User" WHERE 1=1 OFFSET $1) AS "sub"

-- name: contains-filter
SELECT "public"."User"."id", "public"."User"."email" FROM "public"."User" WHERE "public"."User"."email"::text ILIKE $1 OFFSET $2
