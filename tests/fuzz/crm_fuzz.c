/* crm_fuzz.c: libFuzzer driver for the CRM validators: contact_validate()
 * (POST /api/crm/contacts and PATCH /api/crm/contacts/:id) and
 * assign_validate() (POST .../:id/assign) of apps/crm.c, and
 * create_validate() (POST /api/notifications) of apps/notify.c. Both files
 * are #included to reach their statics; the few names they share are
 * renamed for the second. The validators take the parsed body and touch
 * neither the request nor the database, so nothing needs a stub.
 *
 * Input: the first byte picks the validator (bits 0-1: 0 create, 1 patch,
 * 2 assign, 3 notification) and how the accepted record is serialized again
 * (bit 2: \u escapes); the rest is the body, parsed as osb_req_json() does
 * (validate_harness.h).
 *
 * Oracles, beyond no crash, sanitizer report or leak, from docs/apps.md's
 * rules (an independent model, below):
 *  - a refusal is 400 validation_failed whose `fields` name exactly the bad
 *    fields (unknown ones, missing required ones, bad values; `contact` for
 *    a patch with nothing to change), each with a reason;
 *  - an accepted body yields the fields present and only those, strings the
 *    body's own within their limits, an e-mail shaped like an address,
 *    `null` or "" clearing email, phone and company (NULL), notes kept as
 *    given, notification data an object or nothing;
 *  - the accepted record serialized and validated again is accepted with
 *    the same values (idempotence). */
#include "../../src/apps/crm.c"

#define Q_INSERT notify_Q_INSERT
#define h_create notify_h_create
#define h_list notify_h_list
#define list_ctx notify_list_ctx
#define list_ctx_t notify_list_ctx_t
#include "../../src/apps/notify.c"
#undef Q_INSERT
#undef h_create
#undef h_list
#undef list_ctx
#undef list_ctx_t

#include "validate_harness.h"

/* docs/apps.md "CRM contacts": name 1–200, email ≤ 254 (and shaped like an
 * address), phone ≤ 50, company ≤ 200, notes ≤ 10,000; all but name may be
 * null. In the order of crm.c's F_*. */
static const vf_rule_t C_RULES[F_COUNT] = {
  {"name", VF_STR, 1, 200, false, false},
  {"email", VF_STR, 0, 254, true, false},
  {"phone", VF_STR, 0, 50, true, false},
  {"company", VF_STR, 0, 200, true, false},
  {"notes", VF_STR, 0, 10000, true, false},
};
static const char *const C_KNOWN[] = { "name", "email", "phone", "company", "notes", NULL };

/* One '@', neither first nor last, no blank, line break or angle bracket. */
static bool address_shaped(const char *s) {
  size_t n = strlen(s), ats = 0, at = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '@') ats++, at = i;
    if (strchr(" \t\r\n<>", s[i])) return false;
  }
  return ats == 1 && at > 0 && at + 1 < n;
}

static bool contact_value_ok(int k, const json_t *v) {
  if (!vf_value_ok(&C_RULES[k], v)) return false;
  if (k == F_EMAIL && json_is_string(v) && json_string_length(v) > 0) return address_shaped(json_string_value(v));
  return true;
}

/* ---- contacts ---- */

static void fuzz_contact(json_t *body, bool create, bool ascii, int depth) {
  json_t *expected = json_object();
  unsigned present = 0;
  const char *key;
  json_t *val;
  json_object_foreach(body, key, val) {
    if (!vf_in(C_KNOWN, key)) vf_bad(expected, key);
  }
  for (int k = 0; k < F_COUNT; k++) {
    json_t *v = json_object_get(body, C_RULES[k].name);
    if (!v) continue;
    present |= 1u << k;
    if (!contact_value_ok(k, v)) vf_bad(expected, C_RULES[k].name);
  }
  if (create && !(present & (1u << F_NAME))) vf_bad(expected, "name");
  if (!create && json_object_size(expected) == 0 && present == 0) vf_bad(expected, "contact");

  osb_app_fields_t f = {0};
  fields_t v;
  bool ok = contact_validate(&f, body, create, &v);
  if (!vf_verdict(ok, &f, expected)) {
    json_decref(expected);
    return;
  }
  osb_assert(v.mask == present && v.mask != 0);
  if (create) osb_assert(v.mask & (1u << F_NAME));
  for (int k = 0; k < F_COUNT; k++) {
    json_t *j = json_object_get(body, C_RULES[k].name);
    if (!j) {
      osb_assert(v.v[k] == NULL);
      continue;
    }
    const char *s = json_string_value(j);   /* NULL for JSON null */
    bool clears = k == F_EMAIL || k == F_PHONE || k == F_COMPANY;
    if (!s || (clears && !*s)) {
      osb_assert(v.v[k] == NULL);
      osb_assert(k != F_NAME);
    } else {
      osb_assert(v.v[k] == s);   /* borrowed */
      osb_assert(vf_string_ok(&C_RULES[k], s, strlen(s)));
      if (k == F_EMAIL) osb_assert(address_shaped(s));
    }
  }
  /* Idempotence: every field given back (null for a cleared one). */
  if (depth == 0) {
    json_t *rec = json_object();
    for (int k = 0; k < F_COUNT; k++)
      if (v.mask & (1u << k))
        json_object_set_new(rec, C_RULES[k].name, v.v[k] ? json_string(v.v[k]) : json_null());
    json_t *again = vf_reparse(rec, ascii);
    osb_app_fields_t f2 = {0};
    fields_t v2;
    osb_assert(contact_validate(&f2, again, create, &v2));
    osb_assert(v2.mask == v.mask);
    for (int k = 0; k < F_COUNT; k++) osb_assert(vf_same_str(v.v[k], v2.v[k]));
    fuzz_contact(again, create, ascii, depth + 1);
    json_decref(again);
    json_decref(rec);
  }
  json_decref(expected);
}

/* ---- assign ---- */

static const vf_rule_t USER_ID = {"user_id", VF_STR, 1, 64, false, false};

static void fuzz_assign(json_t *body, bool ascii) {
  static const char *const known[] = { "user_id", NULL };
  json_t *expected = json_object();
  const char *key;
  json_t *val;
  json_object_foreach(body, key, val) {
    if (!vf_in(known, key)) vf_bad(expected, key);
  }
  json_t *u = json_object_get(body, "user_id");
  if (!u || !vf_value_ok(&USER_ID, u)) vf_bad(expected, "user_id");

  osb_app_fields_t f = {0};
  const char *user_id = NULL;
  bool ok = assign_validate(&f, body, &user_id);
  if (vf_verdict(ok, &f, expected)) {
    osb_assert(user_id == json_string_value(u));
    osb_assert(vf_string_ok(&USER_ID, user_id, strlen(user_id)));
    json_t *rec = json_pack("{s:s}", "user_id", user_id);
    json_t *again = vf_reparse(rec, ascii);
    osb_app_fields_t f2 = {0};
    const char *user_id2 = NULL;
    osb_assert(assign_validate(&f2, again, &user_id2) && strcmp(user_id, user_id2) == 0);
    json_decref(again);
    json_decref(rec);
  }
  json_decref(expected);
}

/* ---- notifications (notify.c's limits: docs/apps.md names none) ---- */

static const vf_rule_t N_RULES[4] = {
  {"user_id", VF_STR, 1, 64, false, false},
  {"kind", VF_STR, 1, 64, false, false},
  {"title", VF_STR, 1, 200, false, false},
  {"body", VF_STR, 0, 4000, true, false},
};

static void fuzz_notification(json_t *body, bool ascii, int depth) {
  static const char *const known[] = { "user_id", "kind", "title", "body", "data", NULL };
  json_t *expected = json_object();
  const char *key;
  json_t *val;
  json_object_foreach(body, key, val) {
    if (!vf_in(known, key)) vf_bad(expected, key);
  }
  for (int k = 0; k < 4; k++) {
    json_t *v = json_object_get(body, N_RULES[k].name);
    if (k < 3 && !v) vf_bad(expected, N_RULES[k].name);   /* required */
    if (v && !vf_value_ok(&N_RULES[k], v)) vf_bad(expected, N_RULES[k].name);
  }
  json_t *data = json_object_get(body, "data");
  if (data && !json_is_object(data) && !json_is_null(data)) vf_bad(expected, "data");

  osb_app_fields_t f = {0};
  notify_in_t in;
  bool ok = create_validate(&f, body, &in);
  if (!vf_verdict(ok, &f, expected)) {
    json_decref(expected);
    return;
  }
  const char *got[4] = { in.user_id, in.kind, in.title, in.body };
  for (int k = 0; k < 4; k++) {
    json_t *v = json_object_get(body, N_RULES[k].name);
    osb_assert(got[k] == (v ? json_string_value(v) : NULL));
    if (got[k]) osb_assert(vf_string_ok(&N_RULES[k], got[k], strlen(got[k])));
    else osb_assert(k == 3);
  }
  osb_assert(in.data == (json_is_object(data) ? data : NULL));
  if (depth == 0) {
    json_t *rec = json_pack("{s:s, s:s, s:s}", "user_id", in.user_id, "kind", in.kind, "title", in.title);
    if (in.body) json_object_set_new(rec, "body", json_string(in.body));
    if (in.data) json_object_set(rec, "data", in.data);
    json_t *again = vf_reparse(rec, ascii);
    osb_app_fields_t f2 = {0};
    notify_in_t in2;
    osb_assert(create_validate(&f2, again, &in2));
    osb_assert(vf_same_str(in.user_id, in2.user_id) && vf_same_str(in.kind, in2.kind));
    osb_assert(vf_same_str(in.title, in2.title) && vf_same_str(in.body, in2.body));
    osb_assert((in.data == NULL) == (in2.data == NULL));
    if (in.data) osb_assert(json_equal(in.data, in2.data));
    fuzz_notification(again, ascii, depth + 1);
    json_decref(again);
    json_decref(rec);
  }
  json_decref(expected);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool checked;
  if (!checked) {   /* the model's table follows crm.c's field order */
    for (int k = 0; k < F_COUNT; k++) osb_assert(strcmp(C_RULES[k].name, contact_fields[k]) == 0);
    checked = true;
  }
  if (size < 1 || size > 65536) return 0;
  int kind = data[0] & 3;
  bool ascii = (data[0] >> 2) & 1;
  json_t *body = vf_parse_body(data + 1, size - 1);
  if (!body) return 0;   /* 400 invalid_json: no validator runs */
  switch (kind) {
    case 0: fuzz_contact(body, true, ascii, 0); break;
    case 1: fuzz_contact(body, false, ascii, 0); break;
    case 2: fuzz_assign(body, ascii); break;
    default: fuzz_notification(body, ascii, 0); break;
  }
  json_decref(body);
  return 0;
}
