/* market.h: the Market Data routes, read side.
 *
 *   GET /api/market/categories
 *       {"categories":[{"category","slug","channel","procedures","market_size_usd","avg_growth_pct"}]}
 *       slug: lower case, each run of characters other than a-z0-9 one '-',
 *       trimmed ("Crowns & Bridges" → crowns-bridges); channel: market:<slug>.
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
 * The write routes are in market_write.c:
 *   PUT /api/market/procedures/:id  (admin/service) any of name, category,
 *       subcategory, market_size_usd, growth_pct, avg_price_usd, region,
 *       description → 200 with the procedure; publishes procedure.updated
 *       on market:all and the category's channel (old and new on a move).
 *   POST /api/market/procedures/bulk {procedures:[...]} (admin/service,
 *       ≤ 5,000 rows, one transaction, all or nothing) → 200 {updated,
 *       created, ids}; publishes procedures.updated {ids} (≤ 1,000 a message)
 *       on market:all and each affected category channel.
 * Events are published only after the transaction committed. */
#ifndef OSB_APPS_MARKET_H
#define OSB_APPS_MARKET_H

#include <stddef.h>

/* Register the routes and declare the statements (so every new database
 * connection prepares them). After osb_db_init, before the server starts. */
void osb_market_routes(void);

/* The channel slug of a category (see above) into out (cap bytes, NUL
 * terminated); returns its length, 0 when the name has no letter or digit. */
size_t osb_market_slug(const char *category, char *out, size_t cap);

/* market_write.c, called by osb_market_routes. */
void osb__market_write_routes(void);

#endif
