/* SPDX-License-Identifier: MIT */
/*
 * CRC-32C (Castagnoli), the checksum of the PROXY v2 CRC32C TLV. A pure
 * function: no tables to initialise, no globals written.
 */
#ifndef SMTPFRONT_CRC32C_H
#define SMTPFRONT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * Continue a CRC-32C over p[0..n): start with crc = 0; feeding a buffer in
 * pieces gives the same value as feeding it whole. crc32c_update(0,
 * "123456789", 9) is 0xe3069283 (RFC 3720 B.4).
 */
uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t n);

#endif
