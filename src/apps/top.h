/* top.h: `osbackend top [--url URL]`, the dashboard:metrics stream in a
 * terminal (SPEC §4 Operations, docs/dashboard.md).
 *
 * Connects to URL (default ws://127.0.0.1:$PORT/ws, PORT defaulting to
 * 10000; http:// is accepted and means ws://; wss is not supported), signs
 * in with the access token in OSB_TOKEN (an admin's), subscribes to
 * dashboard:metrics and redraws an 80×24 screen on every sample and once a
 * second. Reconnects with a capped, jittered backoff whenever the
 * connection goes away. Quits on q, Ctrl-C, Ctrl-D, SIGINT or SIGTERM,
 * restoring the terminal (mode, cursor, main screen).
 *
 * Runs its own libuv loop; needs no configuration. Returns the process
 * exit status: 0 after quitting, 2 for bad arguments. */
#ifndef OSB_APPS_TOP_H
#define OSB_APPS_TOP_H

int osb_top_main(int argc, char **argv);

#endif
