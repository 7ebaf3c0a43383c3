/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the config loader: any bytes through cfg_load_string,
 * then everything freed. Name resolution is off so inputs never reach DNS.
 * Build from the top of the tree: clang -fsanitize=fuzzer,address
 * -D_GNU_SOURCE -I. tests/fuzz_config.c config/config.c config/value.c -lyaml
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	struct cfg_diag diag = { 0 };
	struct config *cfg;

	cfg_set_resolve(false);
	if (devnull == NULL)
		devnull = fopen("/dev/null", "w");
	cfg = cfg_load_string((const char *)data, size, "fuzz.yaml", &diag);
	if (cfg != NULL && cfg->nlisteners > 0 && cfg->listeners[0].pool >= cfg->npools)
		__builtin_trap();	/* a loaded config must be consistent */
	if (devnull != NULL)
		cfg_diag_print(&diag, devnull);
	cfg_free(cfg);
	cfg_diag_free(&diag);
	return 0;
}
