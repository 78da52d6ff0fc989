// SPDX-License-Identifier: MIT
/*
 * rdma_rw: real verbs between the two rxe devices that deploy/rxe-run sets
 * up. A passive endpoint on DG_RXE_ADDR0 exposes a registered buffer; an
 * active endpoint bound to DG_RXE_ADDR1 WRITEs and READs it at sizes from
 * 1 B to 64 KiB and checks every byte, including the guard bytes around each
 * target. Then it READs outside the region and checks that it fails with an
 * error completion, not a crash, and that the endpoint reports the failure.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dg_rdma.h"
#include "rxe_env.h"

#define REGION (128 * 1024)
#define GUARD  64

struct server {
	struct dg_rdma_listener *l;
	struct dg_rdma_ep *ep;
	struct dg_rdma_mr *mr;
	uint8_t *buf;
	int rc;
};

struct fixture {
	struct server srv;
	pthread_t thr;
	struct dg_rdma_ep *ep;
	struct dg_rdma_mr *mr;
	uint8_t *buf;
	struct dg_rdma_remote remote;
};

static void *server_main(void *arg)
{
	struct server *s = arg;
	struct dg_rdma_ep_attr attr = {.sq_depth = 16};
	struct dg_rdma_remote r;
	char pd[DG_RDMA_CONNECT_PDATA_MAX];
	size_t plen = sizeof(pd);

	s->rc = dg_rdma_listener_next(s->l, &attr, 20000, pd, &plen, &s->ep);
	if (s->rc)
		return NULL;
	s->rc = dg_rdma_reg(s->ep, s->buf, REGION,
			    DG_RDMA_ACC_REMOTE_READ | DG_RDMA_ACC_REMOTE_WRITE,
			    &s->mr);
	if (s->rc)
		return NULL;
	r = dg_rdma_mr_remote(s->mr);
	s->rc = dg_rdma_ep_accept(s->ep, &r, sizeof(r), 20000);
	return NULL;
}

static int setup(void **state)
{
	struct dg_rdma_ep_attr attr = {.sq_depth = 64, .rd_depth = 8};
	struct fixture *f = calloc(1, sizeof(*f));
	size_t rlen = sizeof(f->remote);
	int rc;

	assert_non_null(f);
	f->srv.buf = aligned_alloc(4096, REGION);
	f->buf = aligned_alloc(4096, 2 * REGION);
	assert_non_null(f->srv.buf);
	assert_non_null(f->buf);
	memset(f->srv.buf, 0, REGION);
	rc = dg_rdma_listen(dg_rxe_addr(0), 0, 4, &f->srv.l);
	assert_int_equal(rc, 0);
	assert_int_equal(pthread_create(&f->thr, NULL, server_main, &f->srv),
			 0);
	rc = dg_rdma_ep_create(dg_rxe_src(), dg_rxe_addr(0),
			       dg_rdma_listener_port(f->srv.l), &attr, 5000,
			       &f->ep);
	assert_int_equal(rc, 0);
	rc = dg_rdma_reg(f->ep, f->buf, 2 * REGION, DG_RDMA_ACC_LOCAL_WRITE,
			 &f->mr);
	assert_int_equal(rc, 0);
	rc = dg_rdma_ep_connect(f->ep, "hello", 5, &f->remote, &rlen, 10000);
	assert_int_equal(rc, 0);
	pthread_join(f->thr, NULL);
	assert_int_equal(f->srv.rc, 0);
	assert_true(rlen >= sizeof(f->remote));
	assert_int_equal(f->remote.len, REGION);
	printf("# connected %s -> %s\n", dg_rdma_ep_device(f->ep),
	       dg_rdma_ep_device(f->srv.ep));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	dg_rdma_dereg(f->mr);
	dg_rdma_ep_destroy(f->ep);
	dg_rdma_dereg(f->srv.mr);
	dg_rdma_ep_destroy(f->srv.ep);
	dg_rdma_listener_destroy(f->srv.l);
	free(f->buf);
	free(f->srv.buf);
	free(f);
	return 0;
}

/* Waits (bounded) for one completion and returns it. */
static struct dg_rdma_wc wait_one(struct dg_rdma_ep *ep)
{
	struct dg_rdma_wc wc = {0};
	long spins;

	for (spins = 0; spins < 2000000000L; spins++) {
		int n = dg_rdma_poll(ep, &wc, 1);

		assert_true(n >= 0);
		if (n == 1)
			return wc;
	}
	fail_msg("no completion");
	return wc;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 8));
}

static const uint32_t sizes[] = {1,    2,    7,	   63,	 64,	65,
				 1000, 1024, 4095, 4096, 16385, 65536};

static void test_write_then_read(void **state)
{
	struct fixture *f = *state;
	size_t k;

	for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		uint32_t len = sizes[k];
		uint32_t off = GUARD + (uint32_t)(k * 3); /* unaligned too */
		uint8_t *src = f->buf, *dst = f->buf + REGION;
		struct dg_rdma_wc wc;
		uint32_t i;

		memset(f->srv.buf, 0xA5, REGION);
		fill(src, len, (unsigned)k + 1);
		assert_int_equal(dg_rdma_post_write(f->ep, f->mr, src, len,
						    f->remote.addr + off,
						    f->remote.rkey, k,
						    DG_RDMA_SIGNALED),
				 0);
		wc = wait_one(f->ep);
		assert_int_equal(wc.status, 0);
		assert_int_equal(wc.wr_id, k);
		assert_int_equal(wc.opcode, DG_RDMA_OP_WRITE);
		/* Every byte arrived, nothing around it was touched. */
		assert_memory_equal(f->srv.buf + off, src, len);
		for (i = off - GUARD; i < off; i++)
			assert_int_equal(f->srv.buf[i], 0xA5);
		for (i = off + len; i < off + len + GUARD; i++)
			assert_int_equal(f->srv.buf[i], 0xA5);

		/* Change the remote copy locally, READ it back. */
		fill(f->srv.buf + off, len, (unsigned)k + 100);
		memset(dst, 0, len + GUARD);
		assert_int_equal(dg_rdma_post_read(f->ep, f->mr, dst, len,
						   f->remote.addr + off,
						   f->remote.rkey, 1000 + k,
						   DG_RDMA_SIGNALED),
				 0);
		wc = wait_one(f->ep);
		assert_int_equal(wc.status, 0);
		assert_int_equal(wc.wr_id, 1000 + k);
		assert_int_equal(wc.opcode, DG_RDMA_OP_READ);
		assert_memory_equal(dst, f->srv.buf + off, len);
		for (i = len; i < len + GUARD; i++)
			assert_int_equal(dst[i], 0);
	}
}

/* Many requests queued with DG_RDMA_MORE, one doorbell, one completion. */
static void test_batched_writes(void **state)
{
	struct fixture *f = *state;
	const uint32_t n = 48, len = 512;
	struct dg_rdma_wc wc;
	uint32_t i;

	fill(f->buf, n * len, 77);
	memset(f->srv.buf, 0, REGION);
	for (i = 0; i < n; i++) {
		unsigned fl = DG_RDMA_MORE;

		if (i == n - 1)
			fl |= DG_RDMA_SIGNALED;
		assert_int_equal(dg_rdma_post_write(f->ep, f->mr,
						    f->buf + i * len, len,
						    f->remote.addr + i * len,
						    f->remote.rkey, 7, fl),
				 0);
	}
	assert_int_equal(dg_rdma_flush(f->ep), 0);
	wc = wait_one(f->ep);
	assert_int_equal(wc.status, 0);
	assert_int_equal(wc.wr_id, 7);
	assert_memory_equal(f->srv.buf, f->buf, n * len);
	/* Unsignaled requests were retired: the queue is free again. */
	for (i = 0; i < 1000 && dg_rdma_sq_free(f->ep) != 64; i++)
		dg_rdma_poll(f->ep, &wc, 1);
	assert_int_equal(dg_rdma_sq_free(f->ep), 64);
}

/* Many more unsignaled requests than the queue holds: never stuck. */
static void test_unsignaled_stream(void **state)
{
	struct fixture *f = *state;
	struct dg_rdma_wc wc[8];
	uint32_t posted = 0;
	long spins = 0;

	while (posted < 2000 && spins++ < 200000000L) {
		int rc = dg_rdma_post_write(f->ep, f->mr, f->buf, 64,
					    f->remote.addr, f->remote.rkey, 1,
					    0);
		if (rc == -EAGAIN) {
			assert_true(dg_rdma_poll(f->ep, wc, 8) >= 0);
			continue;
		}
		assert_int_equal(rc, 0);
		posted++;
	}
	assert_int_equal(posted, 2000);
}

/* Local buffer outside the local region: refused before the device. */
static void test_local_bounds(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(dg_rdma_post_read(f->ep, f->mr,
					   f->buf + 2 * REGION - 8, 16,
					   f->remote.addr, f->remote.rkey, 1,
					   DG_RDMA_SIGNALED),
			 -EINVAL);
}

/* Must run last: the failed READ moves the QP to the error state. */
static void test_read_outside_region(void **state)
{
	struct fixture *f = *state;
	struct dg_rdma_wc wc;

	assert_int_equal(dg_rdma_ep_check(f->ep), 0);
	assert_int_equal(dg_rdma_post_read(f->ep, f->mr, f->buf, 4096,
					   f->remote.addr + REGION - 100,
					   f->remote.rkey, 42,
					   DG_RDMA_SIGNALED),
			 0);
	wc = wait_one(f->ep);
	assert_int_equal(wc.wr_id, 42);
	assert_int_not_equal(wc.status, 0);
	printf("# out-of-region READ: %s (%d)\n", dg_rdma_wc_str(&wc),
	       wc.status);
	assert_int_equal(dg_rdma_ep_check(f->ep), -EIO);
	assert_int_equal(dg_rdma_post_read(f->ep, f->mr, f->buf, 8,
					   f->remote.addr, f->remote.rkey, 43,
					   DG_RDMA_SIGNALED),
			 -EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_then_read),
		cmocka_unit_test(test_batched_writes),
		cmocka_unit_test(test_unsignaled_stream),
		cmocka_unit_test(test_local_bounds),
		cmocka_unit_test(test_read_outside_region),
	};

	dg_rxe_require();
	return cmocka_run_group_tests_name("rdma_rw", tests, setup, teardown);
}
