/* cli.c: `osbackend create-user --email E --role admin|user|service [--name N]`.
 *
 * The password is the first line of stdin (so it never appears in argv,
 * the process list or shell history). The command opens the database like
 * the server does (migrating it if needed), inserts the user and prints
 * {"id","email","role"} on stdout. Exit 0 done, 1 failure (duplicate
 * e-mail, database down), 2 usage. */
#include "auth/auth.h"
#include "auth/internal.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "core/config.h"
#include "db/db.h"
#include "obs/log.h"
#include "obs/metrics.h"

static int cli_rc = 1;

static void on_created(void *ud, int err, osb__user_t *u) {
  if (err == OSB_ECONFLICT) {
    fprintf(stderr, "create-user: a user with this e-mail already exists\n");
  } else if (err < 0) {
    fprintf(stderr, "create-user: database error: %s\n", osb_strerror(err));
  } else {
    json_t *j = json_pack("{s:s,s:s,s:s}", "id", u->id, "email", u->email, "role",
                          osb_role_name((osb_role_t)u->role));
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(j);
    cli_rc = 0;
  }
  osb__user_free(u);
  osb_db_close();
}

static void walk_close(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static int usage(void) {
  fprintf(stderr, "usage: osbackend create-user --email E --role admin|user|service [--name N]\n"
                  "       (the password is read from the first line of stdin)\n");
  return 2;
}

int osb_auth_create_user_main(int argc, char **argv) {
  const char *email = NULL, *role_s = NULL, *name = "";
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "create-user") == 0) continue;
    if (i + 1 < argc && strcmp(argv[i], "--email") == 0) email = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--role") == 0) role_s = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--name") == 0) name = argv[++i];
    else return usage();
  }
  osb_role_t role = osb_role_parse(role_s ? role_s : "user");
  if (!email || role == OSB_ROLE_NONE) return usage();

  char pw[OSB__PASSWORD_MAX + 2];
  if (!fgets(pw, sizeof(pw), stdin)) pw[0] = 0;
  size_t n = strlen(pw);
  while (n > 0 && (pw[n - 1] == '\n' || pw[n - 1] == '\r')) pw[--n] = 0;
  const char *why = osb_auth_check_credentials(email, pw);
  if (why) {
    sodium_memzero(pw, sizeof(pw));
    fprintf(stderr, "create-user: %s\n", why);
    return 2;
  }
  if (strlen(name) > 100) {
    sodium_memzero(pw, sizeof(pw));
    fprintf(stderr, "create-user: --name is longer than 100 bytes\n");
    return 2;
  }
  char *hash = osb__pw_hash_now(pw, n);
  sodium_memzero(pw, sizeof(pw));
  if (!hash) {
    fprintf(stderr, "create-user: cannot hash the password (out of memory)\n");
    return 1;
  }
  char *norm = osb__email_normalize(email);

  uv_loop_t loop;
  uv_loop_init(&loop);
  osb_core_init(&loop);
  osb_metrics_init();
  int rc = osb_db_init(osb_cfg);
  if (rc < 0) {
    fprintf(stderr, "create-user: cannot open the database: %s\n", osb_strerror(rc));
    cli_rc = 1;
  } else {
    osb__store_user_insert(norm, name, hash, role, on_created, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  sodium_memzero(hash, strlen(hash));
  free(hash);
  free(norm);
  uv_walk(&loop, walk_close, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  osb_metrics_reset();
  return cli_rc;
}
