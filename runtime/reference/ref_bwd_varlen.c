/* ref_bwd_varlen.c: dm_ref_bwd_varlen, the CPU reference of dm_bwd_varlen (SPEC §3 and §5) on host
 * buffers, cu_seqlens included. Each sequence becomes a dense B = 1 problem, the forward
 * reference's view of the packed buffers (ref_fwd_varlen.c) plus the gradients', handed to the
 * dense backward's conversions and float64 core (ref_bwd.c): one backward reference, so varlen
 * and dense cannot disagree about the math. For tests and tools; production code never calls it. */
#include <stdint.h>

#include "half.h"
#include "reference.h"

#define CALL "dm_ref_bwd_varlen"

/* A query-based dbias's columns j in [Lk, max_seqlen_k) of sequence seq's rows: no key there,
 * written 0 (dbias.shape[2] may exceed max_seqlen_k: the columns past it are left alone). */
static void zero_past_the_keys(const dm_bwd_varlen_args *a, const dm_bwd_varlen_plan *plan,
                               const dm_ref_varlen_seq *seq)
{
    const int64_t *s = plan->dbias_stride, heads = a->dbias.shape[1];
    for (int64_t t = seq->q0; t < seq->q0 + seq->Lq; t++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t j = seq->Lk; j < plan->fwd.max_seqlen_k; j++) {
                const int64_t off = t * s[0] + h * s[1] + j * s[2];
                if (plan->fwd.bias_dtype == DM_F32)
                    ((float *)a->dbias.data)[off] = 0;
                else
                    ((uint16_t *)a->dbias.data)[off] = dm_double_to_16(0, plan->fwd.bias_dtype);
            }
}

dm_status dm_ref_bwd_varlen(dm_ctx *ctx, const dm_bwd_varlen_args *host_args)
{
    const dm_bwd_varlen_args *a = host_args;
    dm_bwd_varlen_plan plan;
    dm_status st = dm_bwd_varlen_check(ctx, CALL, a, &plan);
    if (st != DM_OK)
        return st;
    const dm_fwd_varlen_plan *p = &plan.fwd;
    const int32_t *cu_q = a->cu_seqlens_q.data, *cu_k = a->cu_seqlens_k.data;
    if ((st = dm_ref_check_varlen_seqlens(ctx, CALL, p, cu_q, cu_k)) != DM_OK)
        return st;
    const dm_fwd_varlen_args fwd = {.q = a->q,
                                    .k = a->k,
                                    .v = a->v,
                                    .o = a->o,
                                    .lse = a->lse,
                                    .mask = a->mask,
                                    .bias = a->bias};
    /* A sequence without queries still writes its keys' dk = dv = 0 (and a key-based dbias 0). */
    for (int64_t b = 0; st == DM_OK && b < p->B; b++) {
        const dm_ref_varlen_seq seq = dm_ref_varlen_sequence(p, cu_q, cu_k, b);
        dm_fwd_args df;
        dm_bwd_plan dp = {.has_dbias = plan.has_dbias, .deterministic = plan.deterministic};
        dm_ref_varlen_view(&fwd, p, &seq, &df, &dp.fwd);
        dm_bwd_args da = {.q = df.q,
                          .k = df.k,
                          .v = df.v,
                          .o = df.o,
                          .lse = df.lse,
                          .mask = df.mask,
                          .bias = df.bias};
        da.dout.data =
            dm_ref_varlen_rows(a->dout.data, p->dtype, plan.dout_stride, seq.q0, dp.dout_stride);
        da.dq.data = dm_ref_varlen_rows(a->dq.data, p->dtype, plan.dq_stride, seq.q0, dp.dq_stride);
        da.dk.data = dm_ref_varlen_rows(a->dk.data, p->dtype, plan.dk_stride, seq.k0, dp.dk_stride);
        da.dv.data = dm_ref_varlen_rows(a->dv.data, p->dtype, plan.dv_stride, seq.k0, dp.dv_stride);
        if (plan.has_dbias) {
            /* The dense shape the gradient is summed to: a key-based bias broadcasts over the
             * sequence's queries. */
            const int64_t shape[4] = {1, a->bias.shape[1],
                                      p->bias_layout == DM_LAYOUT_Q ? seq.Lq : 1, seq.Lk};
            for (int d = 0; d < 4; d++)
                da.bias.shape[d] = shape[d];
            da.dbias.data = dm_ref_varlen_mb_view(a->dbias.data, p->bias_dtype, p->bias_layout,
                                                  plan.dbias_stride, &seq, dp.dbias_stride);
        }
        st = dm_ref_bwd_attention(ctx, CALL, &da, &dp);
        if (st == DM_OK && plan.has_dbias && p->bias_layout == DM_LAYOUT_Q)
            zero_past_the_keys(a, &plan, &seq);
    }
    return st;
}
