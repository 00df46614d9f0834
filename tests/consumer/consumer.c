/* consumer.c: a user's program against the installed library (tests/consumer_test.sh): the header
 * and the version agree, an offline context compiles one kernel through the installed library's
 * embedded templates and NVRTC into a cache directory (argv[1]), and says so. No GPU needed. */
#include <dmattn.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    dm_ctx *ctx = NULL;
    int cached = -1, rc = 1;

    if (argc != 2) {
        fprintf(stderr, "usage: consumer CACHE_DIR\n");
        return 2;
    }
    if (dm_version() != DM_VERSION_NUM) {
        fprintf(stderr, "consumer: library %d, header %d\n", dm_version(), DM_VERSION_NUM);
        return 1;
    }
    if (dm_ctx_create(&ctx, DM_NO_DEVICE) != DM_OK || dm_ctx_set_cache_dir(ctx, argv[1]) != DM_OK ||
        dm_prebuild(ctx, "combine.d64.f16.sm80", &cached) != DM_OK) {
        fprintf(stderr, "consumer: %s\n", dm_errmsg(ctx));
        goto out;
    }
    printf("dmattn %s: combine.d64.f16.sm80 %s\n", dm_version_string(),
           cached ? "from the cache" : "compiled");
    rc = 0;
out:
    dm_ctx_destroy(ctx);
    return rc;
}
