/* market_fuzz.c: libFuzzer driver for the Market Data write validators
 * (apps/market_write.c, #included to reach its statics): put_validate()
 * (PUT /api/market/procedures/:id), bulk_validate() (POST .../bulk) and
 * parse_id() (the path's :id). They take the parsed body and touch neither
 * the request nor the database, so nothing needs a stub.
 *
 * Input: the first byte picks the validator (bits 0-1: 0 and 3 PUT, 1 bulk,
 * 2 the path id) and, for PUT, the path's id (bits 2-3) and how the
 * accepted record is serialized again (bit 4: \u escapes); the rest is the
 * body, parsed as osb_req_json() does (validate_harness.h), or the id text.
 *
 * Oracles, beyond no crash, sanitizer report or leak, from docs/apps.md's
 * rules (an independent model, below, not the code's reading of them):
 *  - a refusal is 400 validation_failed whose `fields` name exactly the bad
 *    fields (unknown ones included), each with a reason; a bulk refusal
 *    lists exactly the bad rows, by index, ascending, each the same way; a
 *    bulk of more than 5,000 rows is 413 whatever the rows hold; a body
 *    without a `procedures` array names `procedures`;
 *  - an accepted body yields the present fields and only those, each
 *    within its limits (strings 1..N code points, numbers finite in range,
 *    the category with a letter or digit), the strings being the body's;
 *    a bulk row with `id` is an update of that id, one without a create
 *    with every required field;
 *  - the accepted record serialized and validated again is accepted with
 *    the same values (idempotence);
 *  - parse_id accepts 1-10 digits worth 1..2147483647 and writes the
 *    number without leading zeros, which it accepts again. */
#include "../../src/apps/market_write.c"

#include <stdio.h>

#include "validate_harness.h"

/* docs/apps.md "Market Data writes", in the order of the code's F_* (the
 * driver checks the names agree). */
static const vf_rule_t RULES[F_COUNT] = {
  {"name", VF_STR, 1, 200, false, false},
  {"category", VF_STR, 1, 100, false, true},
  {"subcategory", VF_STR, 0, 100, true, false},
  {"market_size_usd", VF_INT, 0, 1e15, false, false},
  {"growth_pct", VF_NUM, -100, 1000, false, false},
  {"avg_price_usd", VF_NUM, 0, 1e9, false, false},
  {"region", VF_STR, 1, 100, false, false},
  {"description", VF_STR, 0, 10000, false, false},
};
static const char *const KNOWN[] = { "id", "name", "category", "subcategory", "market_size_usd", "growth_pct",
                                     "avg_price_usd", "region", "description", NULL };
/* Required to create (docs/apps.md: all but subcategory and description). */
static const bool REQUIRED[F_COUNT] = { true, true, false, true, true, true, true, false };

/* ---- the model ---- */

/* The bad writable fields and unknown keys of one object; returns the mask
 * of writable fields present. */
static unsigned expect_fields(json_t *obj, json_t *bad) {
  unsigned present = 0;
  const char *key;
  json_t *val;
  json_object_foreach(obj, key, val) {
    if (!vf_in(KNOWN, key)) vf_bad(bad, key);
  }
  for (int k = 0; k < F_COUNT; k++) {
    json_t *v = json_object_get(obj, RULES[k].name);
    if (!v) continue;
    present |= 1u << k;
    if (!vf_value_ok(&RULES[k], v)) vf_bad(bad, RULES[k].name);
  }
  return present;
}

static bool id_ok(const json_t *v, json_int_t want) {
  return json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 2147483647 &&
         (want == 0 || json_integer_value(v) == want);
}

/* ---- checks of an accepted row ---- */

/* rv holds exactly the fields of obj, with their values, within limits. */
static void check_row(const row_vals_t *rv, json_t *obj) {
  for (int k = 0; k < F_COUNT; k++) {
    json_t *v = json_object_get(obj, RULES[k].name);
    bool has = (rv->mask >> k) & 1u;
    osb_assert(has == (v != NULL));
    if (RULES[k].type == VF_STR) {
      if (!has || json_is_null(v)) {
        osb_assert(rv->s[k] == NULL);
        osb_assert(!has || RULES[k].nullable);
        continue;
      }
      osb_assert(rv->s[k] == json_string_value(v));   /* borrowed, not copied */
      osb_assert(vf_string_ok(&RULES[k], rv->s[k], strlen(rv->s[k])));
    } else {
      osb_assert(rv->s[k] == NULL);
    }
  }
  osb_assert((rv->mask >> F_COUNT) == 0);
  if (rv->mask & (1u << F_SIZE)) {
    osb_assert(rv->size >= 0 && rv->size <= 1000000000000000LL);
    osb_assert((double)rv->size == json_number_value(json_object_get(obj, "market_size_usd")));
  } else osb_assert(rv->size == 0);
  if (rv->mask & (1u << F_GROWTH)) {
    osb_assert(isfinite(rv->growth) && rv->growth >= -100 && rv->growth <= 1000);
    osb_assert(rv->growth == json_number_value(json_object_get(obj, "growth_pct")));
  } else osb_assert(rv->growth == 0);
  if (rv->mask & (1u << F_PRICE)) {
    osb_assert(isfinite(rv->price) && rv->price >= 0 && rv->price <= 1e9);
    osb_assert(rv->price == json_number_value(json_object_get(obj, "avg_price_usd")));
  } else osb_assert(rv->price == 0);
  if (rv->mask & (1u << F_CATEGORY)) {
    char slug[256];
    osb_assert(osb_market_slug(rv->s[F_CATEGORY], slug, sizeof(slug)) > 0);
    osb_assert(slug[0] != '-' && slug[strlen(slug) - 1] != '-');
  }
}

static json_t *row_record(const row_vals_t *rv, const char *id) {
  json_t *o = json_object();
  if (id && *id) json_object_set_new(o, "id", json_integer(atoll(id)));
  for (int k = 0; k < F_COUNT; k++) {
    if (!((rv->mask >> k) & 1u)) continue;
    json_t *v;
    if (k == F_SIZE) v = json_integer(rv->size);
    else if (k == F_GROWTH) v = json_real(rv->growth);
    else if (k == F_PRICE) v = json_real(rv->price);
    else v = rv->s[k] ? json_string(rv->s[k]) : json_null();
    osb_assert(v != NULL);
    json_object_set_new(o, RULES[k].name, v);
  }
  return o;
}

static void same_row(const row_vals_t *a, const row_vals_t *b) {
  osb_assert(a->mask == b->mask);
  for (int k = 0; k < F_COUNT; k++) osb_assert(vf_same_str(a->s[k], b->s[k]));
  osb_assert(a->size == b->size);
  osb_assert(a->growth == b->growth && signbit(a->growth) == signbit(b->growth));
  osb_assert(a->price == b->price && signbit(a->price) == signbit(b->price));
}

/* ---- PUT ---- */

static void fuzz_put(json_t *body, const char *path_id, bool ascii) {
  json_t *expected = json_object();
  unsigned present = expect_fields(body, expected);
  json_t *jid = json_object_get(body, "id");
  if (jid && !id_ok(jid, atoll(path_id))) vf_bad(expected, "id");
  if (json_object_size(expected) == 0 && present == 0) vf_bad(expected, "procedure");

  osb_app_fields_t f = {0};
  row_vals_t rv;
  bool ok = put_validate(&f, body, path_id, &rv);
  if (vf_verdict(ok, &f, expected)) {
    osb_assert(rv.mask == present && rv.mask != 0);
    check_row(&rv, body);
    /* Idempotence: the record, sent again (with the path id when the body
     * had it), is accepted with the same values. */
    json_t *rec = row_record(&rv, jid ? path_id : NULL);
    json_t *again = vf_reparse(rec, ascii);
    osb_app_fields_t f2 = {0};
    row_vals_t rv2;
    osb_assert(put_validate(&f2, again, path_id, &rv2));
    same_row(&rv, &rv2);
    json_decref(again);
    json_decref(rec);
  }
  json_decref(expected);
}

/* ---- bulk ---- */

static void fuzz_bulk(json_t *body, bool ascii, int depth) {
  json_t *list = json_object_get(body, "procedures");
  bulk_check_t k;
  int status = bulk_validate(body, &k);
  if (!json_is_array(list)) {
    osb_assert(status == 400 && !k.bad && !k.rows);
    json_t *expected = json_pack("{s:b}", "procedures", 1);
    vf_check_fields(k.f.fields, expected);
    json_decref(expected);
    json_decref(k.f.fields);
    return;
  }
  osb_assert(osb_app_fields_ok(&k.f));
  size_t n = json_array_size(list);
  osb_assert(k.n == n);
  if (n > BULK_MAX_ROWS) {   /* 413 before any row is looked at */
    osb_assert(status == 413 && !k.bad && !k.rows);
    return;
  }
  /* The model's verdict per row. */
  json_t *expected_rows = json_array();
  for (size_t i = 0; i < n; i++) {
    json_t *row = json_array_get(list, i);
    json_t *exp = json_object();
    if (!json_is_object(row)) {
      vf_bad(exp, "row");
    } else {
      unsigned present = expect_fields(row, exp);
      json_t *jid = json_object_get(row, "id");
      if (jid && !id_ok(jid, 0)) vf_bad(exp, "id");
      if (json_object_size(exp) == 0) {
        if (jid && present == 0) vf_bad(exp, "row");
        if (!jid)
          for (int m = 0; m < F_COUNT; m++)
            if (REQUIRED[m] && !((present >> m) & 1u)) vf_bad(exp, RULES[m].name);
      }
    }
    if (json_object_size(exp) > 0)
      json_array_append_new(expected_rows, json_pack("{s:I, s:o}", "index", (json_int_t)i, "fields", exp));
    else json_decref(exp);
  }

  if (json_array_size(expected_rows) > 0) {
    osb_assert(status == 400 && k.bad && !k.rows);
    osb_assert(json_array_size(k.bad) == json_array_size(expected_rows));
    for (size_t j = 0; j < json_array_size(k.bad); j++) {
      json_t *got = json_array_get(k.bad, j), *want = json_array_get(expected_rows, j);
      osb_assert(json_is_object(got) && json_object_size(got) == 2);
      json_t *gi = json_object_get(got, "index"), *wi = json_object_get(want, "index");
      osb_assert(json_is_integer(gi) && json_integer_value(gi) == json_integer_value(wi));
      vf_check_fields(json_object_get(got, "fields"), json_object_get(want, "fields"));
    }
    json_decref(k.bad);
  } else {
    osb_assert(status == 0 && !k.bad);
    osb_assert((k.rows != NULL) == (n > 0));
    json_t *recs = json_array();
    for (size_t i = 0; i < n; i++) {
      bulk_row_t *r = &k.rows[i];
      json_t *row = json_array_get(list, i);
      json_t *jid = json_object_get(row, "id");
      osb_assert(r->b == NULL && !r->found && !r->old_category && !r->new_category);
      osb_assert(r->update == (jid != NULL));
      if (jid) {
        char want[24];
        snprintf(want, sizeof(want), "%lld", (long long)json_integer_value(jid));
        osb_assert(strcmp(r->id, want) == 0);
        osb_assert(r->rv.mask != 0);
      } else {
        osb_assert(r->id[0] == 0);
        for (int m = 0; m < F_COUNT; m++) osb_assert(!REQUIRED[m] || ((r->rv.mask >> m) & 1u));
      }
      check_row(&r->rv, row);
      json_array_append_new(recs, row_record(&r->rv, r->id));
    }
    /* Idempotence, once (the second pass checks the reparsed body). */
    if (depth == 0) {
      json_t *rec = json_pack("{s:o}", "procedures", recs);
      json_t *again = vf_reparse(rec, ascii);
      bulk_check_t k2;
      osb_assert(bulk_validate(again, &k2) == 0);
      osb_assert(k2.n == n);
      for (size_t i = 0; i < n; i++) {
        osb_assert(k2.rows[i].update == k.rows[i].update);
        osb_assert(strcmp(k2.rows[i].id, k.rows[i].id) == 0);
        same_row(&k.rows[i].rv, &k2.rows[i].rv);
      }
      free(k2.rows);
      fuzz_bulk(again, ascii, depth + 1);
      json_decref(again);
      json_decref(rec);
    } else {
      json_decref(recs);
    }
    free(k.rows);
  }
  json_decref(expected_rows);
}

/* ---- the path id ---- */

static void fuzz_id(const uint8_t *p, size_t n) {
  char *s = strndup((const char *)p, n);
  size_t len = strlen(s);
  bool digits = len >= 1 && len <= 10;
  unsigned long long v = 0;
  for (size_t i = 0; i < len && digits; i++) {
    if (s[i] < '0' || s[i] > '9') digits = false;
    else v = v * 10 + (unsigned)(s[i] - '0');
  }
  bool want = digits && v >= 1 && v <= 2147483647ULL;
  char out[12] = "unchanged";
  bool ok = parse_id(s, out);
  osb_assert(ok == want);
  if (ok) {
    char canon[24];
    snprintf(canon, sizeof(canon), "%llu", v);
    osb_assert(strcmp(out, canon) == 0);
    char again[12];
    osb_assert(parse_id(out, again) && strcmp(again, out) == 0);
  }
  free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool checked;
  if (!checked) {   /* the model's table follows the code's field order */
    for (int k = 0; k < F_COUNT; k++) osb_assert(strcmp(RULES[k].name, field_names[k]) == 0);
    checked = true;
  }
  if (size < 1 || size > 65536) return 0;
  static const char *const path_ids[4] = { "1", "2", "42", "2147483647" };
  int kind = data[0] & 3;
  bool ascii = (data[0] >> 4) & 1;
  if (kind == 2) {
    fuzz_id(data + 1, size - 1);
    return 0;
  }
  json_t *body = vf_parse_body(data + 1, size - 1);
  if (!body) return 0;   /* 400 invalid_json: no validator runs */
  if (kind == 1) fuzz_bulk(body, ascii, 0);
  else fuzz_put(body, path_ids[(data[0] >> 2) & 3], ascii);
  json_decref(body);
  return 0;
}
