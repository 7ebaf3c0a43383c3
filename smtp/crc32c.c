/* SPDX-License-Identifier: MIT */
/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), four bits at a
 * time: a 16-entry table is small enough to read and check by hand, and a
 * PROXY header is at most 536 bytes, so speed is not the point.
 */
#include "smtp/crc32c.h"

uint32_t
crc32c_update(uint32_t crc, const uint8_t *p, size_t n)
{
	/* tab[i] = i shifted through the polynomial four times. */
	static const uint32_t tab[16] = {
		0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1,
		0x417b1dbc, 0x5125dad3, 0x61c69362, 0x7198540d,
		0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9,
		0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
	};

	crc = ~crc;
	while (n-- > 0) {
		crc ^= *p++;
		crc = (crc >> 4) ^ tab[crc & 0x0f];
		crc = (crc >> 4) ^ tab[crc & 0x0f];
	}
	return ~crc;
}
