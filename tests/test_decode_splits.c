/* test_decode_splits.c: the decode path's choice of key splits (fwd_decode.c), on the CPU. */
#include "fwd_decode.h"
#include "harness.h"

START_TEST(a_request_is_kept_up_to_the_tile_count)
{
    ck_assert_int_eq(dm_fwd_decode_splits(13, 512, 64, 132, 3), 13);
    ck_assert_int_eq(dm_fwd_decode_splits(13, 512, 5, 132, 3), 5);
    ck_assert_int_eq(dm_fwd_decode_splits(4, 512, 0, 132, 3), 1);
    /* up to the limit the argument check holds requests to (DM_NUM_SPLITS_MAX) */
    ck_assert_int_eq(dm_fwd_decode_splits(1024, 8, 8192, 132, 3), 1024);
}
END_TEST

START_TEST(automatic_splits_give_two_well_filled_waves)
{
    /* one long row, 8 K/V heads, 8192 tiles: 85 x 8 = 680 blocks, 2 waves of 396, 86% full
     * (84: 672 / 792 = 84.8%, not enough) */
    ck_assert_int_eq(dm_fwd_decode_splits(0, 8, 8192, 132, 3), 85);
    /* the decode batch: 512 pairs, 64 tiles */
    int n = dm_fwd_decode_splits(0, 512, 64, 132, 3);
    int64_t blocks = 512 * n, slots = 396, waves = (blocks + slots - 1) / slots;
    ck_assert_int_ge(waves, 2);
    ck_assert(blocks >= 0.85 * waves * slots);
    /* few tiles: never more splits than tiles */
    ck_assert_int_le(dm_fwd_decode_splits(0, 1, 3, 132, 3), 3);
}
END_TEST

#define TESTS(X) \
    X(a_request_is_kept_up_to_the_tile_count) \
    X(automatic_splits_give_two_well_filled_waves)
DM_TEST_MAIN("decode_splits", TESTS)
