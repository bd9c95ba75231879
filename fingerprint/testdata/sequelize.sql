-- Sequelize 6: values inlined as literals, statements end in a semicolon.

-- name: find-by-id
SELECT "id", "email", "name", "createdAt", "updatedAt" FROM "Users" AS "User" WHERE "User"."id" = 42;

-- name: eager-load-in
SELECT "id", "title", "userId", "createdAt", "updatedAt" FROM "Posts" AS "Post" WHERE "Post"."userId" IN (1, 2, 3, 4);

-- name: join
SELECT "User"."id", "User"."email", "posts"."id" AS "posts.id", "posts"."title" AS "posts.title" FROM "Users" AS "User" LEFT OUTER JOIN "Posts" AS "posts" ON "User"."id" = "posts"."userId" WHERE "User"."id" = 42;

-- name: paginated-list
SELECT "id", "email", "name" FROM "Users" AS "User" ORDER BY "User"."createdAt" DESC LIMIT 20 OFFSET 40;

-- name: count
SELECT count(*) AS "count" FROM "Users" AS "User" WHERE "User"."active" = true;

-- name: search-like
SELECT "id", "email" FROM "Users" AS "User" WHERE "User"."email" LIKE '%@example.com';

-- name: update
UPDATE "Users" SET "name"='Ada',"updatedAt"='2024-05-01 10:00:00.000 +00:00' WHERE "id" = 42
