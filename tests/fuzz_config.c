/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the config loader: any bytes through
 * cfg_load_string, then everything freed (LeakSanitizer watches). A config
 * comes back exactly when no error was reported, and a loaded one is
 * consistent. Name resolution is off so inputs never reach DNS. Built by
 * scripts/fuzz.sh (clang, -fsanitize=fuzzer); tests/fuzz_replay.c runs it
 * over the seed corpus with gcc.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void
fuzz_check_config(const struct config *cfg)
{
	FUZZ_CHECK(cfg->nlisteners > 0 && cfg->npools > 0);
	FUZZ_CHECK(cfg->workers > 0);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];

		FUZZ_CHECK(l->pool < cfg->npools);
		FUZZ_CHECK(l->nbinds > 0);
		FUZZ_CHECK(memchr(l->name, '\0', sizeof(l->name)) != NULL &&
		    l->name[0] != '\0');
		FUZZ_CHECK(!l->accept_proxy || l->ntrusted_proxies > 0);
	}
	for (size_t i = 0; i < cfg->npools; i++)
		FUZZ_CHECK(cfg->pools[i].nservers > 0);
}

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
	FUZZ_CHECK((cfg != NULL) == (diag.nerrors == 0));
	FUZZ_CHECK(diag.n <= diag.nerrors + diag.nwarnings);
	for (size_t i = 0; i < diag.n; i++)
		FUZZ_CHECK(memchr(diag.entries[i].message, '\0',
		    sizeof(diag.entries[i].message)) != NULL);
	if (cfg != NULL)
		fuzz_check_config(cfg);
	if (devnull != NULL)
		cfg_diag_print(&diag, devnull);
	cfg_free(cfg);
	cfg_diag_free(&diag);
	return 0;
}
