// SPDX-License-Identifier: MIT
/*
 * fuzz_attach: the two ways a host asks an engine to take it in, with
 * whatever the host sends.
 *
 *  - Shared memory (nic/shm.c): a real unix socket of a real engine daemon
 *    (dagger-nic --shm, here dg_nic_create with shm_path in a temporary
 *    directory); the input makes the attach message (a struct
 *    dg_shm_attach_req with fields as given or fixed up, or raw bytes of
 *    any length) and the descriptors that go with it (none, a memfd sealed
 *    or not, of the right size or not, a pipe, two memfds, a plain file).
 *  - RDMA (nic/tenant.c, nic_accept_rdma): the connection request's private
 *    data, through the in-memory transport (fake_rdma.c): an attach
 *    request with fields as given or fixed up, or a peer engine's hello.
 *    An accepted RDMA tenant is then driven a little over its emulated
 *    host memory (READ, parse, WRITE back, on checksummed rings or not).
 *
 * What must hold (each failure aborts): the engine takes the host in
 * exactly when the request is valid by the contract (dagger/ctrl.h:
 * magic, version, a layout, a length that is that layout's
 * dg_region_bytes; for shared memory a regular file of exactly that size
 * sealed against shrinking and growing), answers a shared-memory host
 * with status 0 and a tenant, or a negative errno, and counts a refusal;
 * an accepted tenant's replies are well formed; a shared-memory tenant is
 * freed when its socket closes; no descriptor and no endpoint is left
 * behind once the engine is destroyed; no crash, no sanitizer report.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dagger/ctrl.h"
#include "engine.h"
#include "fake_rdma.h"
#include "fuzz_entry.h"
#include "fuzz_util.h"
#include "fz_raw.h"
#include "peer.h"

/* Regions larger than this are refused by the harness, not allocated. */
#define MAX_REGION (1u << 20)
/*
 * Engine iterations an RDMA tenant's message may take: an idle flow is
 * READ at most every poll_max_us (1 us here), a few READ rounds apart.
 */
#define HOST_POLLS 100000u

static char sock_dir[64], sock_path[96];

static void rm_dir(void)
{
	if (sock_dir[0])
		rmdir(sock_dir);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		fz_fail("/proc/self/fd: %s", strerror(errno));
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

static struct dg_nic_stats stats(struct dg_nic *n)
{
	struct dg_nic_stats s;

	if (dg_nic_stats(n, &s, 1000))
		fz_fail("dg_nic_stats");
	return s;
}

static void poll_engine(struct dg_nic *n, uint32_t k)
{
	int rc;

	while (k--) {
		dg_nic_poll(n);
		rc = nic_fuzz_check(n);
		if (rc)
			fz_fail("engine bookkeeping broken: %d", rc);
	}
}

/* A slot count: a power of two in range mostly, anything sometimes. */
static uint32_t pick_slots(struct fz_in *in)
{
	uint8_t s = fz_u8(in);

	return s < 192 ? 1u << (s % 18) : fz_u32(in);
}

static bool layout_len(uint32_t nflows, uint32_t slots, uint32_t pay_shift,
		       uint64_t *len)
{
	struct dg_region_layout l;

	if (dg_region_layout_pay(nflows, slots, pay_shift, &l))
		return false;
	*len = dg_region_bytes(&l);
	return true;
}

/* ---- shared memory ------------------------------------------------------ */

enum fd_kind {
	FD_NONE,
	FD_SEALED,	/* memfd, the request's length, shrink+grow sealed */
	FD_SEALED_SIZE, /* the same, a length from the input */
	FD_UNSEALED,	/* memfd of the right length, no seals */
	FD_SHRINK_ONLY, /* only F_SEAL_SHRINK */
	FD_PIPE,	/* not a file */
	FD_TWO,		/* two sealed memfds */
	FD_PLAIN_FILE,	/* a regular file that cannot be sealed */
	FD_KINDS,
};

static int memfd(uint64_t len, int seals)
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)len) ||
	    (seals && fcntl(fd, F_ADD_SEALS, seals)))
		fz_fail("memfd: %s", strerror(errno));
	return fd;
}

static int plain_file(uint64_t len)
{
	char path[160];
	int fd;

	snprintf(path, sizeof(path), "%s/plain", sock_dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)len))
		fz_fail("%s: %s", path, strerror(errno));
	unlink(path);
	return fd;
}

static void shm_case(struct fz_in *in)
{
	struct dg_nic_opts o = {.shm_path = sock_path, .engine_id = 3};
	uint8_t form = fz_u8(in), raw[96];
	enum fd_kind kind = (enum fd_kind)((form >> 1) % FD_KINDS);
	struct dg_shm_attach_req req;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE((2 + DG_MAX_FLOWS) * sizeof(int))];
	} cm;
	struct iovec iov;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct dg_attach_rep rep;
	struct dg_nic_stats st;
	uint64_t want_len = 0, fd_len;
	int fds[2 + DG_MAX_FLOWS], nfd = 0, sock, i, base_fds = count_fds();
	bool valid, layout;
	struct dg_nic *n;
	ssize_t k, sent;
	size_t msg_len;

	memset(&req, 0, sizeof(req));
	if (form & 1) {
		msg_len = fz_u8(in) % sizeof(raw);
		fz_bytes(in, raw, msg_len);
		if (msg_len >= sizeof(req))
			memcpy(&req, raw, sizeof(req));
	} else {
		req.nflows = fz_u8(in) % 70;
		req.slots = pick_slots(in);
		req.flags = fz_u32(in);
		/* Mostly none or small payload areas; any value at times. */
		req.pay_shift = fz_u8(in);
		req.pay_shift = req.pay_shift < 128   ? 0
				: req.pay_shift < 240 ? 12 + req.pay_shift % 2
						      : req.pay_shift % 40;
		req.magic = form & 32 ? DG_SHM_MAGIC : fz_u32(in);
		req.version = form & 64 ? DG_REGION_VERSION : fz_u32(in);
		layout = layout_len(req.nflows, req.slots, req.pay_shift,
				    &want_len);
		req.len = form & 128 && layout ? want_len : fz_u32(in);
		memcpy(raw, &req, sizeof(req));
		msg_len = sizeof(req);
	}
	layout = layout_len(req.nflows, req.slots, req.pay_shift, &want_len);
	fd_len = kind == FD_SEALED_SIZE ? fz_u32(in) % MAX_REGION : req.len;
	if (fd_len > MAX_REGION)
		fd_len = 0; /* not allocated: a wrong size then */
	/* Every region larger than MAX_REGION is a wrong size, see above. */
	valid = msg_len == sizeof(req) && req.magic == DG_SHM_MAGIC &&
		req.version == DG_REGION_VERSION && layout &&
		req.len == want_len && fd_len == req.len;
	switch (kind) {
	case FD_NONE:
		valid = false;
		break;
	case FD_SEALED:
	case FD_SEALED_SIZE:
		fds[nfd++] = memfd(fd_len, F_SEAL_SHRINK | F_SEAL_GROW);
		break;
	case FD_UNSEALED:
		fds[nfd++] = memfd(fd_len, 0);
		valid = false;
		break;
	case FD_SHRINK_ONLY:
		fds[nfd++] = memfd(fd_len, F_SEAL_SHRINK);
		valid = false;
		break;
	case FD_PIPE: {
		int p[2];

		if (pipe2(p, O_CLOEXEC))
			fz_fail("pipe");
		close(p[1]);
		fds[nfd++] = p[0];
		valid = false;
		break;
	}
	case FD_TWO:
		/*
		 * The second memfd stands where the first eventfd goes:
		 * one descriptor too many, or a flow's eventfd that is not
		 * one. Never valid.
		 */
		fds[nfd++] = memfd(fd_len, F_SEAL_SHRINK | F_SEAL_GROW);
		fds[nfd++] = memfd(4096, F_SEAL_SHRINK | F_SEAL_GROW);
		valid = false;
		break;
	default:
		fds[nfd++] = plain_file(fd_len);
		valid = false;
		break;
	}
	/*
	 * Then one eventfd per flow (the engine kicks a sleeping thread
	 * through it), unless the input says one fewer: a request with a
	 * count of descriptors other than 1 + nflows is refused.
	 */
	if (kind != FD_NONE && req.nflows <= DG_MAX_FLOWS) {
		uint32_t ne = req.nflows - (fz_u8(in) & 1 && req.nflows);

		for (i = 0; i < (int)ne; i++) {
			fds[nfd++] = eventfd(0, EFD_CLOEXEC);
			if (fds[nfd - 1] < 0)
				fz_fail("eventfd");
		}
	}
	if ((uint32_t)nfd != 1 + req.nflows)
		valid = false;

	if (dg_nic_create(&o, &n))
		fz_fail("engine on %s", sock_path);
	sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	if (sock < 0 || connect(sock, (struct sockaddr *)&a, sizeof(a)))
		fz_fail("connect %s: %s", sock_path, strerror(errno));
	iov = (struct iovec){raw, msg_len};
	if (nfd) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = CMSG_SPACE(nfd * sizeof(int));
		cm.h.cmsg_level = SOL_SOCKET;
		cm.h.cmsg_type = SCM_RIGHTS;
		cm.h.cmsg_len = CMSG_LEN(nfd * sizeof(int));
		memcpy(CMSG_DATA(&cm.h), fds, nfd * sizeof(int));
	}
	sent = sendmsg(sock, &mh, MSG_NOSIGNAL);
	if (sent != (ssize_t)msg_len)
		fz_fail("sendmsg: %s", strerror(errno));
	for (i = 0; i < nfd; i++)
		close(fds[i]); /* the engine holds its own copies now */
	if (form & 16) {
		/* Gone before the engine looked: the request still counts. */
		close(sock);
		sock = -1;
	}
	poll_engine(n, 1); /* the first iteration accepts */
	st = stats(n);
	if (sock >= 0) {
		k = recv(sock, &rep, sizeof(rep), MSG_DONTWAIT);
		if (msg_len == 0) {
			/* Nothing to answer: the engine hangs up. */
			if (k != 0)
				fz_fail("shm attach: %zd bytes answer an empty "
					"request",
					k);
		} else if (k != (ssize_t)sizeof(rep) ||
			   rep.magic != DG_SHM_MAGIC || rep.engine_id != 3) {
			fz_fail("shm attach: reply of %zd bytes, magic %#x", k,
				k > 0 ? rep.magic : 0);
		} else if (valid != (rep.status == 0) ||
			   (!valid && rep.status >= 0)) {
			fz_fail("shm attach: status %d for a%s request "
				"(%zu bytes, fd kind %d, %u flows x %u slots, "
				"len %llu)",
				rep.status, valid ? " valid" : "n invalid",
				msg_len, kind, req.nflows, req.slots,
				(unsigned long long)req.len);
		}
	}
	if (st.tenants != (valid ? 1u : 0u) ||
	    st.attach_refused != (valid ? 0u : 1u))
		fz_fail("shm attach: %u tenants, %llu refused for a%s request",
			st.tenants, (unsigned long long)st.attach_refused,
			valid ? " valid" : "n invalid");
	if (valid) {
		/* The host goes away: the engine frees its tenant. */
		close(sock);
		sock = -1;
		for (i = 0; i < 2100 && stats(n).tenants; i++)
			poll_engine(n, 1);
		if (stats(n).tenants)
			fz_fail("shm tenant not freed after its socket closed");
	}
	if (sock >= 0)
		close(sock);
	dg_nic_destroy(n);
	if (count_fds() != base_fds)
		fz_fail("descriptors: %d before, %d after", base_fds,
			count_fds());
}

/* ---- RDMA ------------------------------------------------------------- */

/* The accepted tenant's host: a few control messages and a call. */
static void rdma_host(struct dg_nic *n, uint8_t *mem, uint32_t nflows,
		      uint32_t slots, unsigned rflags, struct fz_in *in)
{
	static uint8_t buf[DG_MAX_MSG];
	struct dg_ctrl_msg m = {.op = DG_CTRL_OPEN};
	struct fz_raw r;
	struct fz_msg rep;
	uint32_t f = 0, i, len = fz_u16(in) % 2000;
	int got = 0;

	if (fz_raw_wrap(&r, mem, nflows, slots, rflags))
		return;
	snprintf(m.service, sizeof(m.service), "%s", DG_LOOPBACK_SERVICE);
	if (fz_raw_send(&r, f, DG_FF_CTRL, 0, 1, 0, 0, &m, sizeof(m)))
		return;
	for (i = 0; i < HOST_POLLS && !got; i++) {
		poll_engine(n, 1);
		got = fz_raw_ctrl_reply(&r, f, 1, &rep, buf);
	}
	if (!got)
		fz_fail("RDMA tenant: no reply to OPEN");
	fz_raw_release(&r, f);
	if (rep.h.status != DG_ST_OK)
		fz_fail("RDMA tenant: OPEN of the loopback service: %u",
			rep.h.status);
	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 13);
	if (fz_raw_send(&r, f, DG_FF_REQ, 0, 2, rep.h.conn, 5, buf, len))
		return; /* longer than a small ring */
	for (got = 0, i = 0; i < HOST_POLLS && !got; i++) {
		poll_engine(n, 1);
		got = fz_raw_recv(&r, f, &rep, buf);
	}
	if (!got)
		fz_fail("RDMA tenant: the loopback call was not answered");
	if (!(rep.h.flags & DG_FF_RESP) || rep.h.rpc_id != 2 || rep.len != len)
		fz_fail("RDMA tenant: loopback answer flags %#x rpc %u len %u",
			rep.h.flags, rep.h.rpc_id, rep.len);
	for (i = 0; i < len; i++)
		if (buf[i] != (uint8_t)(i * 13))
			fz_fail("RDMA tenant: loopback byte %u", i);
	fz_raw_release(&r, f);
}

static void rdma_case(struct fz_in *in)
{
	struct dg_nic_opts o = {
		.listen_addr = "fake", .engine_id = 4, .poll_max_us = 1};
	union {
		struct dg_attach_req req;
		struct dg_peer_hello hello;
		uint8_t raw[DG_RDMA_CONNECT_PDATA_MAX];
	} pd;
	uint8_t form = fz_u8(in);
	size_t plen = fz_u8(in) % (sizeof(pd) + 1);
	struct dg_attach_rep rep;
	struct dg_nic_stats st;
	struct dg_rdma_ep *ep;
	uint64_t want_len = 0;
	bool valid, hello, layout;
	uint8_t *mem = NULL;
	struct dg_nic *n;

	fz_bytes(in, &pd, sizeof(pd));
	if (form & 1) {
		pd.hello.magic = DG_PEER_HELLO_MAGIC;
		pd.hello.version = DG_PEER_HELLO_VERSION;
	} else {
		if (form & 2)
			pd.req.magic = DG_ATTACH_MAGIC;
		if (form & 4)
			pd.req.version = DG_REGION_VERSION;
		if (form & 64) {
			/* The fake host writes its ring; it rings no doorbell.
			 */
			pd.req.mode = DG_MODE_POLL;
			pd.req.nflows = 1 + pd.req.nflows % 4;
			pd.req.slots = 64u << (pd.req.slots % 4);
			pd.req.pay_shift = pd.req.pay_shift % 2 ? 12 : 0;
		}
		if (form & 8 && layout_len(pd.req.nflows, pd.req.slots,
					   pd.req.pay_shift, &want_len))
			pd.req.len = (uint32_t)want_len;
	}
	hello = dg_peer_is_hello(&pd, plen);
	layout = layout_len(pd.req.nflows, pd.req.slots, pd.req.pay_shift,
			    &want_len);
	valid = !hello && plen >= sizeof(pd.req) &&
		pd.req.magic == DG_ATTACH_MAGIC &&
		pd.req.version == DG_REGION_VERSION && layout &&
		want_len == pd.req.len && pd.req.mode < DG_MODE_COUNT &&
		pd.req.addr + pd.req.len >= pd.req.addr;
	if (valid && pd.req.len <= MAX_REGION) {
		mem = aligned_alloc(DG_REGION_ALIGN, pd.req.len);
		if (!mem)
			fz_fail("region");
		memset(mem, 0, pd.req.len);
	}
	fake_rdma_reset();
	if (fake_rdma_queue_connect(&pd, plen, mem, pd.req.addr,
				    mem ? pd.req.len : 0, pd.req.rkey))
		fz_fail("queue connect");
	if (dg_nic_create(&o, &n))
		fz_fail("engine");
	/*
	 * The first iteration accepts; the next sees the connection
	 * established (at once here) and adds a peer link.
	 */
	poll_engine(n, 2);
	st = stats(n);
	ep = fake_rdma_last_ep();
	if (st.tenants != (valid ? 1u : 0u) || st.peers != (hello ? 1u : 0u))
		fz_fail("RDMA attach: %u tenants, %u peers for a%s request "
			"(%zu bytes%s)",
			st.tenants, st.peers, valid ? " valid" : "n invalid",
			plen, hello ? ", a hello" : "");
	if (valid) {
		if (!ep ||
		    fake_ep_accept_pdata(ep, &rep, sizeof(rep)) < sizeof(rep) ||
		    rep.magic != DG_ATTACH_MAGIC || rep.status != 0 ||
		    rep.engine_id != 4)
			fz_fail("RDMA attach: accepted without a good reply");
		/* A region whose end wraps past 2^64 was refused above. */
		if (mem && (form & 16) && pd.req.mode == DG_MODE_POLL)
			rdma_host(n, mem, pd.req.nflows, pd.req.slots,
				  pd.req.flags & DG_RING_F_CSUM, in);
		if (form & 32) {
			/* The host goes away: the engine frees its tenant. */
			uint32_t i;

			if (fake_ep_alive(ep))
				fake_ep_disconnect(ep);
			for (i = 0; i < 2100 && stats(n).tenants; i++)
				poll_engine(n, 1);
			if (stats(n).tenants)
				fz_fail("RDMA tenant not freed after its "
					"connection dropped");
		}
	} else if (!hello && st.attach_refused != 1) {
		fz_fail("RDMA attach: an invalid request not counted");
	}
	dg_nic_destroy(n);
	if (fake_rdma_live_eps())
		fz_fail("RDMA attach: %d endpoints left", fake_rdma_live_eps());
	free(mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};

	if (!sock_dir[0]) {
		snprintf(sock_dir, sizeof(sock_dir), "/tmp/dg-fuzz.XXXXXX");
		if (!mkdtemp(sock_dir))
			fz_fail("mkdtemp: %s", strerror(errno));
		snprintf(sock_path, sizeof(sock_path), "%s/e.sock", sock_dir);
		atexit(rm_dir);
	}
	if (fz_u8(&in) & 1)
		rdma_case(&in);
	else
		shm_case(&in);
	return 0;
}
