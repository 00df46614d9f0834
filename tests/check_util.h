/* check_util.h: what the argument-check tests (test_validate, test_varlen_validate) assert of
 * every refusal: the status, a message naming what was wrong, prefixed with the call, in the
 * house style (no full stop). Header only. */
#ifndef DM_CHECK_UTIL_H
#define DM_CHECK_UTIL_H

#include <string.h>

#include "dmattn.h"
#include "harness.h"

/* st (from a check on ctx) is want, and dm_errmsg(ctx) holds needle, starts with "CALL: " and
 * has no full stop. */
static inline void expect_refusal(dm_ctx *ctx, dm_status st, dm_status want, const char *call,
                                  const char *needle)
{
    const char *msg = dm_errmsg(ctx);
    size_t n = strlen(msg), call_len = strlen(call);

    ck_assert_msg(st == want, "status %s, expected %s (message '%s')", dm_status_name(st),
                  dm_status_name(want), msg);
    ck_assert_msg(strstr(msg, needle) != NULL, "message '%s' does not name '%s'", msg, needle);
    ck_assert_msg(strncmp(msg, call, call_len) == 0 && strncmp(msg + call_len, ": ", 2) == 0,
                  "message '%s' does not start with the call", msg);
    ck_assert_msg(n > 0 && msg[n - 1] != '.', "message '%s' ends with a full stop", msg);
}

#endif
