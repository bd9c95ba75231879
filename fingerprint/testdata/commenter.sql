-- sqlcommenter and query log tags: they never change the fingerprint.

-- name: traceparent
SELECT * FROM users WHERE id = $1 /*controller='users',action='show',framework='django%3A5.0',db_driver='psycopg',route='%2Fusers%2F%3Cid%3E',traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/

-- name: escaped-quote
SELECT 1 /*application='It\'s%20here',custom%20key='a%2Cb'*/

-- name: invalid-traceparent
SELECT 1 /*traceparent='00-00000000000000000000000000000000-00f067aa0ba902b7-01'*/

-- name: last-comment-wins
SELECT 1 /*route='%2Fa'*/ /*route='%2Fb'*/

-- name: not-sqlcommenter
SELECT 1 /* just a note: nothing to see */

-- name: marginalia
SELECT 1 /*application:Shop,controller:orders,action:index,line:/app/models/order.rb:12*/
