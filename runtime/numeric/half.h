/* half.h: fp16/bf16 <-> float conversions (round to nearest even) shared by every layer: the
 * bottom of runtime/, below core/, api/ and reference/. */
#ifndef DM_HALF_H
#define DM_HALF_H

#include <stdint.h>

#include "dmattn.h"

float dm_half_to_float(uint16_t h);
uint16_t dm_float_to_half(float f);
float dm_bf16_to_float(uint16_t h);
uint16_t dm_float_to_bf16(float f);

/* d rounded once to dt (DM_F16 or DM_BF16): through float rounded to odd, so the float ->
 * 16-bit rounding to nearest even is exact and there is no double rounding. */
uint16_t dm_double_to_16(double d, dm_dtype dt);

#endif
