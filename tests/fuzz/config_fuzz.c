/* config_fuzz.c: libFuzzer driver for configuration values (config.c, which
 * is #included to reach set_value() and dotenv_line()). Input: one byte
 * picks a variable of the table, the rest is its value (and, separately,
 * parsed as a .env file line by line). Oracles: a value accepted for an INT
 * or PORT lies within the row's bounds; an accepted string or URL is copied
 * and contains no control character; a refusal always gives a reason; a
 * .env line parses to a key of [A-Za-z_][A-Za-z0-9_]* or is refused. */
#include "../../src/core/config.c"

#include <stdlib.h>

static void check_value(const osb_config_var_t *v, const char *val) {
  osb_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  char why[256];
  const char *rule = set_value(&cfg, v, val, why, sizeof(why));
  if (rule) {
    osb_assert(rule[0] != 0);
  } else if (v->type == OSB_CFG_INT || v->type == OSB_CFG_PORT) {
    int n = *FIELD(&cfg, v, int);
    osb_assert(n >= v->min && n <= v->max);
  } else if (v->type == OSB_CFG_STRING || v->type == OSB_CFG_URL) {
    const char *s = *FIELD(&cfg, v, char *);
    osb_assert(s != NULL && !has_cntrl(s));
  }
  char out[512];
  osb_config_format(&cfg, v, out, sizeof(out));
  osb_config_dispose(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 16384) return 0;
  const osb_config_var_t *v = &osb_config_vars[data[0] % osb_config_nvars];
  char *val = strndup((const char *)data + 1, size - 1);
  check_value(v, val);
  free(val);

  const char *p = (const char *)data + 1, *end = (const char *)data + size;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    char *key = NULL, *value = NULL;
    const char *why = dotenv_line(p, e, &key, &value);
    if (!why) {
      osb_assert(key && value && (isalpha((unsigned char)key[0]) || key[0] == '_'));
      for (const char *k = key; *k; k++) osb_assert(isalnum((unsigned char)*k) || *k == '_');
    } else {
      osb_assert(!key && !value);
    }
    free(key);
    free(value);
    p = nl ? nl + 1 : end;
  }
  return 0;
}
