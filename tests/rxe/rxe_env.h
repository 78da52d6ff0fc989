/* SPDX-License-Identifier: MIT */
/*
 * Where the rxe tests find their devices: deploy/rxe-run exports
 * DG_RXE_ADDR0 and DG_RXE_ADDR1, the IPv4 addresses of two RDMA devices.
 * Without them a test exits 77, which ctest reports as skipped (and
 * .ci/run treats as a failure).
 */
#ifndef DG_RXE_ENV_H
#define DG_RXE_ENV_H

#include <stdio.h>
#include <stdlib.h>

static inline const char *dg_rxe_addr(int i)
{
	return getenv(i ? "DG_RXE_ADDR1" : "DG_RXE_ADDR0");
}

/*
 * Source address for active endpoints: by default routing picks it (in
 * rxe-run's topology policy routing sends traffic between the two
 * addresses across the veth pair, so a connection to DG_RXE_ADDR0 leaves
 * from rxe1). DG_RXE_BIND_SRC=1 binds to DG_RXE_ADDR1 explicitly;
 * e2e_rdma's test_client_other_device always does.
 */
static inline const char *dg_rxe_src(void)
{
	const char *b = getenv("DG_RXE_BIND_SRC");

	return b && b[0] == '1' ? dg_rxe_addr(1) : NULL;
}

static inline void dg_rxe_require(void)
{
	if (!dg_rxe_addr(0) || !dg_rxe_addr(1)) {
		fprintf(stderr, "SKIP: DG_RXE_ADDR0/DG_RXE_ADDR1 not set; "
				"run through deploy/rxe-run\n");
		exit(77);
	}
}

#endif
