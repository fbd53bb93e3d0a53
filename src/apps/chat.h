/* chat.h: conversations, messages and agent replies (SPEC §4 Chat agents,
 * docs/agents.md).
 *
 *   POST   /api/conversations {agent_id, title?}                 → 201 conversation
 *   GET    /api/conversations?app=&cursor=&limit=                → {items, next_cursor} (newest first)
 *   GET    /api/conversations/:id
 *   DELETE /api/conversations/:id                                → 204 (cancels its reply)
 *   GET    /api/conversations/:id/messages?after_seq=&cursor=&limit=  → {items, next_cursor} (ascending seq)
 *   POST   /api/conversations/:id/messages {text, voice?}        → 202 {message, reply_id}
 *          Prefer: wait=N → 200 {message, reply} (or the 202 after N s)
 *          Accept: text/event-stream → 200 SSE agent.delta…, agent.done, [DONE]
 *   GET    /api/conversations/:id/export?format=json|md          → attachment
 *   GET    /api/agents/status                                    → {degraded, reason, llm}
 *
 * Every route is owner-scoped: another user's conversation is 404. The
 * channel chat:<conversation_id> belongs to its owner (the access check
 * answers `forbidden` to anyone else); a client `publish {text}` on it is a
 * user message, acked with its seq.
 *
 * A message is one row with the next seq of its conversation
 * (conversations.last_seq, taken in the inserting transaction through the
 * realtime pipeline), so its seq is its seq on chat:<id>. Replies run one
 * at a time per conversation, in the order their messages were stored; a
 * reply streams as coalesced transient agent.delta frames (at most one per
 * OSB_CHAT_DELTA_MS per reply) and ends with the stored agent.done. The
 * client that asked may leave: the reply goes on and is stored. Deleting
 * the conversation cancels it. Loop thread only. */
#ifndef OSB_APPS_CHAT_H
#define OSB_APPS_CHAT_H

/* Routes, the chat: access check and publish hook, the agents:status
 * announcer, the shutdown hook. After osb_rt_start and osb_db_init. */
void osb_chat_routes(void);
/* Cancel every reply and queued message and close the module's handles
 * (memory goes in their close callbacks and as pending database callbacks
 * come back). From main's shutdown, before osb_db_close. Idempotent. */
void osb_chat_close(void);
/* After the loop ended: free what is left. */
void osb_chat_dispose(void);

#endif
