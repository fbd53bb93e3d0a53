/* agents.h: chat agents and their knowledge entries (SPEC §4 Chat agents).
 *
 *   GET    /api/agents?app=repconnect|canvas&cursor=&limit=   (signed in) → {items, next_cursor}
 *   GET    /api/agents/:id                                    (signed in)
 *   POST   /api/agents {app, name, description?, system_prompt?, voice_id?, model?}   (admin) → 201
 *   PATCH  /api/agents/:id {any of those}                     (admin) → 200
 *   GET    /api/agents/:id/knowledge?q=&cursor=&limit=        (admin) → {items, next_cursor}
 *   GET    /api/agents/:id/knowledge/:kid                     (admin)
 *   POST   /api/agents/:id/knowledge {title, body}            (admin) → 201
 *   PATCH  /api/agents/:id/knowledge/:kid {title?, body?}     (admin) → 200
 *   DELETE /api/agents/:id/knowledge/:kid                     (admin) → 204
 *
 * `system_prompt` is shown to admins only. Knowledge entries are indexed
 * for full-text search by the database itself (PostgreSQL: a generated
 * tsvector column; SQLite: an FTS5 table kept in step by triggers), so an
 * entry is searchable as soon as its write committed; `?q=` on the list
 * answers the best matches first, the same search the fallback uses. */
#ifndef OSB_APPS_AGENTS_H
#define OSB_APPS_AGENTS_H

#include <stdbool.h>

/* db/db.h's, declared again (identical typedefs) so this public header
 * includes no other module's header (docs/architecture.md). */
typedef struct osb_db_result osb_db_result_t;
typedef void (*osb_db_cb)(void *ud, int err, const osb_db_result_t *res);

/* Search agent `agent_id`'s knowledge for free text `text`: at most `limit`
 * rows (id, title, body), best match first. Returns false (cb not called)
 * when the text holds no searchable word. cb/ud as osb_db_query. */
bool osb_agents_knowledge_search(const char *agent_id, const char *text, int limit, osb_db_cb cb, void *ud);

void osb_agents_routes(void);

#endif
