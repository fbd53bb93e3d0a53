/* notify.h: durable per-user notifications (SPEC §4 CRM).
 *
 *   POST /api/notifications {user_id, kind, title, body?, data?}  (service/admin) → 201
 *   GET  /api/notifications?unread=true&after_seq=&cursor=&limit=  → {items, next_cursor, unread_count}
 *   POST /api/notifications/:id/read      → {updated}
 *   POST /api/notifications/read-all      → {updated}
 *
 * A notification is stored first, with the next consecutive seq of its user
 * (users.notify_seq, taken with an UPDATE inside the inserting transaction,
 * so concurrent inserts for one user serialize on that row), and delivered
 * on notify:<user_id> after the commit, with the channel seq equal to the
 * notification's seq. Reads are announced as transient
 * {"type":"notification.read","ids","unread_count"} messages. */
#ifndef OSB_APPS_NOTIFY_H
#define OSB_APPS_NOTIFY_H

typedef struct json_t json_t;
typedef struct osb_db_tx osb_db_tx_t;   /* db/db.h */

/* Queue in `tx` what stores one notification for `user_id` and its event on
 * notify:<user_id> (osb_rt_tx_publish_at with the notification's seq, so it
 * is delivered once tx commits and never if it rolls back). cb runs once
 * the row is stored (still inside the transaction, before it commits) with
 * the notification object (owned by the callee: incref to keep it), or an
 * error: OSB_ENOTFOUND when the user does not exist, or the query's error.
 * The caller commits (or rolls back) after cb. Strings are copied; data
 * may be NULL. */
typedef void (*osb_notify_stored_cb)(void *ud, int err, json_t *notification);
void osb_notify_store(osb_db_tx_t *tx, const char *user_id, const char *kind, const char *title,
                      const char *body, const json_t *data, osb_notify_stored_cb cb, void *ud);

void osb_notify_routes(void);

#endif
