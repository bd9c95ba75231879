-- Hibernate 6 through pgjdbc: ? placeholders arrive as $n.

-- name: find-by-id
select u1_0.id,u1_0.email,u1_0.name from users u1_0 where u1_0.id=$1

-- name: eager-load-any
select p1_0.author_id,p1_0.id,p1_0.title from posts p1_0 where p1_0.author_id = any ($1)

-- name: eager-load-in
select p1_0.author_id,p1_0.id,p1_0.title from posts p1_0 where p1_0.author_id in ($1,$2,$3,$4)

-- name: join-fetch
select u1_0.id,p1_0.author_id,p1_0.id,p1_0.title,u1_0.email from users u1_0 left join posts p1_0 on u1_0.id=p1_0.author_id where u1_0.id=$1

-- name: paginated-list
select u1_0.id,u1_0.email from users u1_0 order by u1_0.created_at desc offset $1 rows fetch first $2 rows only

-- name: count
select count(u1_0.id) from users u1_0 where u1_0.active=$1

-- name: lock
select a1_0.id,a1_0.balance from accounts a1_0 where a1_0.id=$1 for no key update
