/* test_decode_splits.c: the decode path's choice of key splits (fwd_decode.c), on the CPU. */
#include "attn_check.h"
#include "fwd_decode.h"
#include "harness.h"

/* Equal lengths: pairs x max_tiles tiles of work. */
static dm_decode_splits equal(int requested, int64_t pairs, int64_t tiles, int per_sm)
{
    return dm_fwd_decode_splits(requested, pairs, tiles, pairs * tiles, 132, per_sm, true);
}

START_TEST(a_request_is_kept_up_to_the_tile_count)
{
    ck_assert_int_eq(equal(13, 512, 64, 3).n, 13);
    ck_assert_int_eq(equal(13, 512, 64, 3).tiles_per_split, 5);
    ck_assert_int_eq(equal(13, 512, 5, 3).n, 5);
    ck_assert_int_eq(equal(4, 512, 0, 3).n, 1);
    /* up to the limit the argument check holds requests to (DM_NUM_SPLITS_MAX) */
    ck_assert_int_eq(equal(1024, 8, 8192, 3).n, 1024);
    /* a request holds for unequal lengths too */
    ck_assert_int_eq(dm_fwd_decode_splits(6, 512, 256, 10000, 132, 2, true).n, 6);
}
END_TEST

START_TEST(automatic_splits_give_two_well_filled_waves)
{
    /* one long row, 8 K/V heads, 8192 tiles: 85 x 8 = 680 blocks, 2 waves of 396, 86% full
     * (84: 672 / 792 = 84.8%, not enough); 97 tiles a split, so 85 splits */
    ck_assert_int_eq(equal(0, 8, 8192, 3).n, 85);
    ck_assert_int_eq(equal(0, 8, 8192, 3).tiles_per_split, 97);
    /* the decode batch: 512 pairs, 64 tiles */
    for (int per_sm = 1; per_sm <= 4; per_sm++) {
        int n = equal(0, 512, 64, per_sm).n;
        int64_t blocks = 512 * n, slots = 132 * per_sm, waves = (blocks + slots - 1) / slots;
        ck_assert_int_ge(waves, 2);
        ck_assert(blocks >= 0.85 * waves * slots);
    }
    /* few tiles: never more splits than tiles */
    ck_assert_int_le(equal(0, 1, 3, 3).n, 3);
}
END_TEST

START_TEST(unequal_lengths_split_by_the_mean_work)
{
    /* 64 sequences of 512..16384 keys (mean 8448: 132 tiles), 8 K/V heads, 2 blocks an SM:
     * 67584 tiles of work over 264 slots, half a slot's share each (128 tiles), 2 splits for
     * the 256-tile sequence */
    dm_decode_splits s = dm_fwd_decode_splits(0, 512, 256, 8 * 64 * 132, 132, 2, true);
    ck_assert_int_eq(s.tiles_per_split, 128);
    ck_assert_int_eq(s.n, 2);
    /* in the grid's order (no longest first): a quarter share, 64 tiles, 4 splits */
    s = dm_fwd_decode_splits(0, 512, 256, 8 * 64 * 132, 132, 2, false);
    ck_assert_int_eq(s.tiles_per_split, 64);
    ck_assert_int_eq(s.n, 4);
    /* little work: never under DM_DECODE_MIN_SPLIT_TILES a split (partials stay cheap) */
    s = dm_fwd_decode_splits(0, 16, 256, 16 * 40, 132, 2, true);
    ck_assert_int_eq(s.tiles_per_split, DM_DECODE_MIN_SPLIT_TILES);
    ck_assert_int_eq(s.n, 256 / DM_DECODE_MIN_SPLIT_TILES);
    /* ... nor more than the longest sequence's tiles */
    s = dm_fwd_decode_splits(0, 16, 10, 16 * 5, 132, 2, true);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(s.tiles_per_split, 10);
    /* a very long sequence next to short ones: at most DM_NUM_SPLITS_MAX splits */
    s = dm_fwd_decode_splits(0, 8, 1 << 20, 4 << 20, 132, 2, true);
    ck_assert_int_le(s.n, DM_NUM_SPLITS_MAX);
    ck_assert_int_ge(s.n * s.tiles_per_split, 1 << 20);
}
END_TEST

START_TEST(unequal_lengths_are_marked_and_the_work_item_bound_holds)
{
    ck_assert(dm_fwd_decode_splits(0, 512, 256, 8 * 64 * 132, 132, 2, true).unequal);
    ck_assert(dm_fwd_decode_splits(4, 512, 256, 8 * 64 * 132, 132, 2, true).unequal);
    ck_assert(!equal(0, 512, 64, 2).unequal);
    ck_assert(!equal(4, 512, 64, 2).unequal);
    /* the bound is at least the real count over random lengths (0 included), and not much more */
    uint64_t s = 7;
    for (int trial = 0; trial < 200; trial++) {
        int64_t B = 1 + trial % 70, bn = trial % 2 ? 64 : 128, per = 1 + trial % 17;
        int64_t total_k = 0, items = 0;
        for (int64_t b = 0; b < B; b++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            int64_t k = (s >> 20) % 5 ? (int64_t)(s >> 40) % 20000 : 0;
            int64_t tiles = (k + bn - 1) / bn;
            items += tiles / per + (tiles % per != 0 || tiles == 0);
            total_k += k;
        }
        int64_t bound = dm_fwd_decode_items(B, total_k, bn, per);
        ck_assert_int_ge(bound, items);
        ck_assert_int_le(bound, items + 2 * B + 1); /* blocks past the items cost a scan each */
    }
    ck_assert_int_eq(dm_fwd_decode_items(10, 0, 64, 16), 10); /* every sequence an empty item */
}
END_TEST

START_TEST(unequal_varlen_batches_launch_work_items_and_the_rest_the_grid)
{
    /* the mixed decode batch: 64 sequences, 506707 keys, 8 K/V heads, 64-key tiles */
    dm_decode_splits sp = dm_fwd_decode_splits(0, 512, 252, 8 * 7918, 132, 2, true);
    ck_assert(sp.unequal && sp.n > 1);
    dm_decode_grid g = dm_fwd_decode_grid(sp, true, 64, 8, 506707, 64);
    ck_assert(g.by_items);
    ck_assert_int_eq(g.x, dm_fwd_decode_items(64, 506707, 64, sp.tiles_per_split) * 8);
    ck_assert_int_eq(g.y * g.z, 1);
    /* a dense call (cannot order), equal lengths, one split: the (split, head, sequence) grid */
    g = dm_fwd_decode_grid(sp, false, 64, 8, 506707, 64);
    ck_assert(!g.by_items);
    ck_assert_int_eq(g.x, sp.n);
    ck_assert_int_eq(g.y, 8);
    ck_assert_int_eq(g.z, 64);
    dm_decode_splits eq = dm_fwd_decode_splits(0, 512, 64, 512 * 64, 132, 2, true);
    ck_assert(!dm_fwd_decode_grid(eq, true, 64, 8, 64 * 4096, 64).by_items);
    dm_decode_splits one = {.n = 1, .tiles_per_split = 252, .unequal = true};
    ck_assert(!dm_fwd_decode_grid(one, true, 64, 8, 506707, 64).by_items);
    /* never more items than n per sequence, however loose the bound */
    dm_decode_splits two = {.n = 2, .tiles_per_split = 1, .unequal = true};
    ck_assert_int_eq(dm_fwd_decode_grid(two, true, 10, 4, 100000, 64).x, 2 * 10 * 4);
}
END_TEST

#define TESTS(X) \
    X(a_request_is_kept_up_to_the_tile_count) \
    X(automatic_splits_give_two_well_filled_waves) \
    X(unequal_lengths_split_by_the_mean_work) \
    X(unequal_lengths_are_marked_and_the_work_item_bound_holds) \
    X(unequal_varlen_batches_launch_work_items_and_the_rest_the_grid)
DM_TEST_MAIN("decode_splits", TESTS)
