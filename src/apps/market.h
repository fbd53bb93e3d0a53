/* market.h: the Market Data routes, read side.
 *
 *   GET /api/market/categories
 *       {"categories":[{"category","procedures","market_size_usd","avg_growth_pct"}]}
 *   GET /api/market/procedures?category=&q=&sort=&limit=&cursor=
 *       {"items":[procedure without description],"next_cursor":string|null,"limit":n}
 *       category: exact name from /categories; q: case-insensitive substring
 *       of the name (1..100 bytes); sort: name | market_size | growth, a
 *       leading '-' for descending (default name); limit 1..100 (default 20);
 *       cursor: the opaque next_cursor of the previous page (keyset
 *       pagination, stable under inserts; only valid with the same sort).
 *   GET /api/market/procedures/:id
 *       the procedure row as a JSON object; 400 bad_request unless :id is an
 *       integer 1..2147483647, 404 not_found if there is no such row.
 *
 * All three are served through the query cache, and a cached read is
 * answered with the body rendered for the first reader (the result's memo).
 * Errors through osb_res_error_code (docs/http.md): database unavailable →
 * 503 unavailable with Retry-After: 1, bad parameters → 400 bad_request.
 * The write routes (PUT /:id, POST /bulk: admin/service, cache
 * invalidation, procedure.updated on market:<category> and market:all) need
 * the auth module and the realtime hub and are outside this file. */
#ifndef OSB_APPS_MARKET_H
#define OSB_APPS_MARKET_H

/* Register the routes and declare the statements (so every new database
 * connection prepares them). After osb_db_init, before the server starts. */
void osb_market_routes(void);

#endif
