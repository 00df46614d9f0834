/* arch.h: the target archs, one row each: everything the library switches on per arch.
 *
 * X(ID, name, cc, nvrtc, device_ccs):
 *   ID          DM_<ID> is the dm_arch value (gen.h)
 *   name        the variant key's last field, dm_ctx_set_arch's and dmgen --arch's word
 *   cc          compute capability the code needs (major * 10 + minor)
 *   nvrtc       NVRTC's --gpu-architecture value
 *   device_ccs  device compute capabilities that pick this arch by default, 0-terminated:
 *               8.7 (Orin) runs sm86 code (a cubin for X.y runs on X.z, z >= y); 9.0 (H100,
 *               H200) gets sm90a, the wgmma kernels, and sm90 (mma.sync only) only when
 *               dm_ctx_set_arch asks for it. */
#ifndef DM_ARCH_H
#define DM_ARCH_H

#include <stddef.h>

#define DM_ARCH_TABLE(X) \
    X(SM80, "sm80", 80, "sm_80", (80, 0)) \
    X(SM86, "sm86", 86, "sm_86", (86, 87, 0)) \
    X(SM89, "sm89", 89, "sm_89", (89, 0)) \
    X(SM90, "sm90", 90, "sm_90", (0)) \
    X(SM90A, "sm90a", 90, "sm_90a", (90, 0))

#define DM_ARCH_ENUM_(id, name, cc, nvrtc, ccs) DM_##id,
typedef enum dm_arch { DM_ARCH_TABLE(DM_ARCH_ENUM_) DM_ARCH_COUNT } dm_arch;
#undef DM_ARCH_ENUM_

#define DM_ARCH_DEVICE_CCS_MAX 4 /* device_ccs entries of one row, the 0 included */

typedef struct dm_arch_info {
    const char *name;  /* "sm90a" */
    int cc;            /* 90 */
    const char *nvrtc; /* "sm_90a" */
    int device_ccs[DM_ARCH_DEVICE_CCS_MAX];
} dm_arch_info;

/* The row of a; NULL for a value outside the enum. */
const dm_arch_info *dm_arch_get(dm_arch a);

/* "sm80, sm86, sm89, sm90 or sm90a" with sep = ", ", last = " or ": the names in table order,
 * for messages; snprintf-like return. */
int dm_arch_list_text(char *buf, size_t n, const char *sep, const char *last);

/* "8.0, 8.6, 8.7, 8.9 and 9.0": the device compute capabilities dm_arch_from_cc maps. */
int dm_arch_device_ccs_text(char *buf, size_t n);

#endif
