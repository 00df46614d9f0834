/* arch.c: the arch table (arch.h) and what is read from it: names, parsing, the device mapping,
 * the lists messages quote. No allocation, no mutable state. */
#include <stdio.h>
#include <string.h>

#include "gen.h"

#define DM_ARCH_CCS_(...) {__VA_ARGS__}
#define DM_ARCH_ROW_(id, name, cc, nvrtc, ccs) [DM_##id] = {name, cc, nvrtc, DM_ARCH_CCS_ ccs},
static const dm_arch_info archs[DM_ARCH_COUNT] = {DM_ARCH_TABLE(DM_ARCH_ROW_)};
#undef DM_ARCH_ROW_
#undef DM_ARCH_CCS_

const dm_arch_info *dm_arch_get(dm_arch a)
{
    if ((int)a < 0 || (int)a >= DM_ARCH_COUNT)
        return NULL;
    return &archs[a];
}

const char *dm_arch_name(dm_arch a)
{
    const dm_arch_info *info = dm_arch_get(a);
    return info ? info->name : "?";
}

dm_status dm_arch_parse(const char *text, dm_arch *out)
{
    if (text == NULL || out == NULL)
        return DM_ERR_INVALID_ARG;
    for (int i = 0; i < DM_ARCH_COUNT; i++) {
        if (strcmp(text, archs[i].name) == 0) {
            *out = (dm_arch)i;
            return DM_OK;
        }
    }
    return DM_ERR_INVALID_ARG;
}

int dm_arch_from_cc(int major, int minor, dm_arch *out)
{
    int cc = major * 10 + minor;

    if (out == NULL || major < 1 || minor < 0 || minor > 9)
        return -1;
    for (int i = 0; i < DM_ARCH_COUNT; i++) {
        for (const int *d = archs[i].device_ccs; *d; d++) {
            if (*d == cc) {
                *out = (dm_arch)i;
                return 0;
            }
        }
    }
    return -1;
}

/* Appends to buf as snprintf would, tracking the length it would have. */
static void append(char *buf, size_t n, int *len, const char *s)
{
    size_t at = (size_t)*len;
    if (at < n)
        snprintf(buf + at, n - at, "%s", s);
    *len += (int)strlen(s);
}

int dm_arch_list_text(char *buf, size_t n, const char *sep, const char *last)
{
    int len = 0;
    if (n > 0)
        buf[0] = '\0';
    for (int i = 0; i < DM_ARCH_COUNT; i++) {
        if (i > 0)
            append(buf, n, &len, i == DM_ARCH_COUNT - 1 ? last : sep);
        append(buf, n, &len, archs[i].name);
    }
    return len;
}

int dm_arch_device_ccs_text(char *buf, size_t n)
{
    int ccs[DM_ARCH_COUNT * DM_ARCH_DEVICE_CCS_MAX], count = 0, len = 0;
    for (int i = 0; i < DM_ARCH_COUNT; i++)
        for (const int *d = archs[i].device_ccs; *d; d++)
            ccs[count++] = *d;
    /* In increasing order: rows are in table order, and one row may map several. */
    for (int i = 1; i < count; i++)
        for (int j = i; j > 0 && ccs[j - 1] > ccs[j]; j--) {
            int t = ccs[j];
            ccs[j] = ccs[j - 1];
            ccs[j - 1] = t;
        }
    if (n > 0)
        buf[0] = '\0';
    for (int i = 0; i < count; i++) {
        char one[16];
        snprintf(one, sizeof one, "%d.%d", ccs[i] / 10, ccs[i] % 10);
        if (i > 0)
            append(buf, n, &len, i == count - 1 ? " and " : ", ");
        append(buf, n, &len, one);
    }
    return len;
}
