/* auth_routes.h: the HTTP face of accounts and sessions (SPEC §4 "Auth and
 * SSO"): /api/auth/{register,login,refresh,logout,me,session} and
 * /api/usage. Policy lives in auth/; these handlers parse, call, answer. */
#ifndef OSB_APPS_AUTH_ROUTES_H
#define OSB_APPS_AUTH_ROUTES_H

/* Register the routes. Once, at start-up, after osb_auth_init(). */
void osb_auth_routes(void);

#endif
