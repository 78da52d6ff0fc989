// SPDX-License-Identifier: MIT
/*
 * attach.c - attaching a host to its NIC engine, its flows, detaching.
 *
 * Three ways to reach an engine, one region layout (dagger/frame.h):
 *  - RDMA (engine_addr): the region is registered and its address and key
 *    go to the engine in the rdma_cm private data; slots carry CRC32C;
 *  - shared memory (shm_path): an engine daemon on this machine; the
 *    region is a sealed memfd passed over the daemon's unix socket;
 *  - in-process (attach_local): an engine thread of this process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dg_rdma.h"
#include "host_impl.h"

static int attach_rdma(struct dg_host *h)
{
	/*
	 * The host posts doorbells, pushes and sleeps (at most one doorbell
	 * in flight per flow, a push of at most two runs before it), and
	 * receives the engine's wake-ups.
	 */
	struct dg_rdma_ep_attr attr = {.sq_depth = 4 * h->nflows + 16,
				       .rq_depth = DG_HOST_RECVS(h->nflows),
				       .rd_depth = 1};
	struct dg_attach_req req = {0};
	struct dg_attach_rep rep = {0};
	struct dg_rdma_remote r;
	size_t rlen = sizeof(rep);
	int rc;

	if (h->size > UINT32_MAX)
		return -EMSGSIZE; /* the attach request carries 32 bits */
	rc = dg_rdma_ep_create(h->o.src_addr, h->o.engine_addr,
			       h->o.engine_port, &attr, h->o.timeout_ms,
			       &h->ep);
	if (rc)
		return rc;
	rc = dg_rdma_reg(h->ep, h->region, h->size,
			 DG_RDMA_ACC_LOCAL_WRITE | DG_RDMA_ACC_REMOTE_READ |
				 DG_RDMA_ACC_REMOTE_WRITE,
			 &h->mr);
	if (rc)
		return rc;
	r = dg_rdma_mr_remote(h->mr);
	req.magic = DG_ATTACH_MAGIC;
	req.version = DG_REGION_VERSION;
	req.addr = r.addr;
	req.rkey = r.rkey;
	req.len = r.len;
	req.nflows = h->nflows;
	req.slots = h->o.slots;
	req.flags = DG_RING_F_CSUM;
	req.mode = (uint32_t)h->o.mode;
	req.pay_shift = h->pay_shift;
	rc = dg_wake_start(h);
	if (rc)
		return rc;
	rc = dg_rdma_ep_connect(h->ep, &req, sizeof(req), &rep, &rlen,
				h->o.timeout_ms);
	/* Refused with a reason (a full engine, a share used up). */
	if (rc == -ECONNREFUSED && rlen >= sizeof(rep) &&
	    rep.magic == DG_ATTACH_MAGIC && rep.status < 0 &&
	    rep.status > -4096)
		return rep.status;
	if (rc)
		return rc;
	if (rlen < sizeof(rep) || rep.magic != DG_ATTACH_MAGIC)
		return -EPROTO;
	if (rep.status)
		return rep.status;
	/* The engine copies the rings part, not the payload areas. */
	if (rep.shadow_len != h->lay.pay_off)
		return -EPROTO;
	h->shadow_addr = rep.shadow_addr;
	h->shadow_rkey = rep.shadow_rkey;
	h->shadow_len = rep.shadow_len;
	return dg_wake_run(h);
}

/*
 * The region of a shared-memory attach: a memfd of exactly the region's
 * size, sealed so that neither side can shrink or grow it under the
 * other's mapping (the engine refuses one that is not), mapped shared.
 */
static int shm_region(struct dg_host *h, int *mfd)
{
	void *p;
	int fd = memfd_create("dagger-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)h->size) ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL))
		goto err;
	p = mmap(NULL, h->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		goto err;
	h->region = p;
	h->region_mapped = true;
	*mfd = fd;
	return 0;
err : {
	int rc = -errno;

	close(fd);
	return rc;
}
}

/*
 * Sends the request with the memfd and one eventfd per flow (the engine
 * writes a flow's to wake its sleeping thread); waits for the answer,
 * which carries the engine's own eventfd (we write it to wake a sleeping
 * engine).
 */
static int attach_shm(struct dg_host *h, int mfd)
{
	union {
		struct cmsghdr c;
		char buf[CMSG_SPACE((1 + DG_MAX_FLOWS) * sizeof(int))];
	} cm;
	union {
		struct cmsghdr c;
		char buf[CMSG_SPACE(sizeof(int))];
	} cr;
	struct dg_shm_attach_req req = {.magic = DG_SHM_MAGIC,
					.version = DG_REGION_VERSION,
					.nflows = h->nflows,
					.slots = h->o.slots,
					.flags = h->rflags,
					.pay_shift = h->pay_shift,
					.len = h->size};
	struct iovec iov = {&req, sizeof(req)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cm.buf,
			    .msg_controllen =
				    CMSG_SPACE((1 + h->nflows) * sizeof(int))};
	struct dg_attach_rep rep;
	struct iovec riov = {&rep, sizeof(rep)};
	struct msghdr rh = {.msg_iov = &riov,
			    .msg_iovlen = 1,
			    .msg_control = cr.buf,
			    .msg_controllen = sizeof(cr.buf)};
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	struct pollfd p;
	struct cmsghdr *c;
	uint32_t i;
	ssize_t k;

	if (strlen(h->o.shm_path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, h->o.shm_path);
	h->shm_sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (h->shm_sock < 0)
		return -errno;
	if (connect(h->shm_sock, (struct sockaddr *)&a, sizeof(a)))
		return -errno;
	memset(&cm, 0, sizeof(cm));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN((1 + h->nflows) * sizeof(int));
	memcpy(CMSG_DATA(c), &mfd, sizeof(int));
	for (i = 0; i < h->nflows; i++)
		memcpy(CMSG_DATA(c) + (1 + i) * sizeof(int), &h->flows[i].evfd,
		       sizeof(int));
	if (sendmsg(h->shm_sock, &mh, MSG_NOSIGNAL) != (ssize_t)sizeof(req))
		return -errno;
	p = (struct pollfd){.fd = h->shm_sock, .events = POLLIN};
	k = poll(&p, 1, h->o.timeout_ms);
	if (k == 0)
		return -ETIMEDOUT;
	if (k < 0)
		return -errno;
	k = recvmsg(h->shm_sock, &rh, MSG_CMSG_CLOEXEC);
	for (c = CMSG_FIRSTHDR(&rh); c; c = CMSG_NXTHDR(&rh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)) && h->engine_fd < 0) {
			memcpy(&h->engine_fd, CMSG_DATA(c), sizeof(int));
			h->engine_fd_owned = true;
		}
	if (k == 0)
		return -ECONNRESET;
	if (k != (ssize_t)sizeof(rep) || rep.magic != DG_SHM_MAGIC)
		return -EPROTO;
	if (rep.status)
		return rep.status;
	return h->engine_fd >= 0 ? 0 : -EPROTO;
}

int dg_host_opts_engine(struct dg_host_opts *o, const char *spec, char *buf,
			size_t cap)
{
	const char *colon;
	char *end;
	unsigned long port = 7471;
	size_t n;

	if (!spec || !spec[0])
		return -EINVAL;
	if (!strncmp(spec, "unix:", 5)) {
		if (!spec[5])
			return -EINVAL;
		o->shm_path = spec + 5;
		o->engine_addr = NULL;
		return 0;
	}
	colon = strrchr(spec, ':');
	n = colon ? (size_t)(colon - spec) : strlen(spec);
	if (colon) {
		port = strtoul(colon + 1, &end, 10);
		if (!colon[1] || *end || !port || port > 65535)
			return -EINVAL;
	}
	if (!n || n >= cap)
		return -EINVAL;
	memcpy(buf, spec, n);
	buf[n] = 0;
	o->engine_addr = buf;
	o->engine_port = (uint16_t)port;
	o->shm_path = NULL;
	return 0;
}

const char *dg_host_opts_str(const struct dg_host_opts *o, char *buf,
			     size_t cap)
{
	if (o->engine_addr)
		snprintf(buf, cap, "%s:%u", o->engine_addr, o->engine_port);
	else if (o->shm_path)
		snprintf(buf, cap, "unix:%s", o->shm_path);
	else
		snprintf(buf, cap, "(in-process engine)");
	return buf;
}

/* "12345", "64K", "16M" (bytes), "none" (DG_PAYLOAD_NONE if allowed). */
static int env_bytes(const char *v, bool none, uint64_t *out)
{
	unsigned long long x;
	char *end;

	if (none && !strcmp(v, "none")) {
		*out = DG_PAYLOAD_NONE;
		return 0;
	}
	x = strtoull(v, &end, 10);
	if (end == v)
		return -EINVAL;
	if (*end == 'K' || *end == 'k')
		x <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		x <<= 20, end++;
	if (*end || x > (1ull << 32))
		return -EINVAL;
	*out = x;
	return 0;
}

/*
 * The payload areas' size as a shift (0: none): o->payload, or by default
 * 16 MiB per area for up to 4 flows, 64 MiB over all flows beyond that,
 * never under 1 MiB. -EINVAL for a size that is no power of two in range.
 */
static int pay_shift_of(const struct dg_host_opts *o, uint32_t nflows,
			uint32_t *shift)
{
	uint64_t b = o->payload;
	uint32_t sh;

	if (b == DG_PAYLOAD_NONE) {
		*shift = 0;
		return 0;
	}
	if (!b) {
		b = (64ull << 20) / nflows;
		if (b > 16ull << 20)
			b = 16ull << 20;
		if (b < 1ull << 20)
			b = 1ull << 20;
		while (b & (b - 1))
			b &= b - 1; /* down to a power of two */
	}
	if (b & (b - 1))
		return -EINVAL;
	for (sh = 0; (1ull << sh) < b; sh++)
		;
	if (sh < DG_PAY_MIN_SHIFT || sh > DG_PAY_MAX_SHIFT)
		return -EINVAL;
	*shift = sh;
	return 0;
}

/*
 * Settings left at 0 come from the environment, so that a deployment
 * (dagger-launch exports a tenant's settings) or a user reaches every
 * program without flags of its own: DG_MODE (poll, doorbell, push),
 * DG_SPIN_US, DG_BUSY_POLL=1, DG_PAYLOAD, DG_LARGE. A value that does not
 * parse is an error, not a silent default.
 */
static int env_defaults(struct dg_host_opts *o)
{
	const char *v;
	char *end;
	uint64_t b;

	v = getenv("DG_MODE");
	if (!o->mode && v && *v) {
		o->mode = dg_mode_parse(v);
		if (o->mode < 0)
			return -EINVAL;
	}
	v = getenv("DG_SPIN_US");
	if (!o->spin_us && v && *v) {
		unsigned long us = strtoul(v, &end, 10);

		if (*end || us > 10000000)
			return -EINVAL;
		o->spin_us = (uint32_t)us;
	}
	v = getenv("DG_YIELD_US");
	if (!o->yield_us && v && *v) {
		unsigned long us = strtoul(v, &end, 10);

		if (*end || us > 10000000)
			return -EINVAL;
		o->yield_us = us ? (uint32_t)us : DG_YIELD_OFF;
	}
	v = getenv("DG_BUSY_POLL");
	if (!o->busy_poll && v && *v)
		o->busy_poll = strcmp(v, "0") != 0;
	v = getenv("DG_PAYLOAD");
	if (!o->payload && v && *v) {
		if (env_bytes(v, true, &b))
			return -EINVAL;
		o->payload = b;
	}
	v = getenv("DG_LARGE");
	if (!o->large && v && *v) {
		if (env_bytes(v, false, &b) || !b || b > DG_MAX_MSG)
			return -EINVAL;
		o->large = (uint32_t)b;
	}
	return 0;
}

int dg_host_attach(const struct dg_host_opts *o, struct dg_host **out)
{
	struct dg_region_hdr *hdr;
	struct dg_host *h;
	int rc, mfd = -1;
	uint32_t i;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->o = *o;
	h->tenant = -1;
	h->shm_sock = -1;
	h->engine_fd = -1;
	h->waker_stop = -1;
	pthread_mutex_init(&h->vlock, NULL);
	if (!h->o.nflows)
		h->o.nflows = 1;
	if (!h->o.slots)
		h->o.slots = 2048;
	if (h->o.timeout_ms <= 0)
		h->o.timeout_ms = 10000;
	rc = env_defaults(&h->o);
	if (rc)
		goto err;
	h->nflows = h->o.nflows;
	rc = pay_shift_of(&h->o, h->nflows ? h->nflows : 1, &h->pay_shift);
	if (!rc)
		rc = dg_region_layout_pay(h->nflows, h->o.slots, h->pay_shift,
					  &h->lay);
	if (rc)
		goto err;
	if (!h->o.engine_addr && !h->o.shm_path && !h->o.attach_local) {
		rc = -EINVAL;
		goto err;
	}
	h->size = dg_region_bytes(&h->lay);
	h->rflags = h->o.engine_addr || h->o.csum ? DG_RING_F_CSUM : 0;
	if (h->o.shm_path && !h->o.engine_addr) {
		rc = shm_region(h, &mfd);
		if (rc)
			goto err;
	} else {
		h->region = aligned_alloc(DG_REGION_ALIGN, h->size);
		if (!h->region) {
			rc = -ENOMEM;
			goto err;
		}
		/* The payload areas are written before they are read. */
		memset(h->region, 0, h->lay.pay_off);
	}
	h->flows = aligned_alloc(64, h->nflows * sizeof(*h->flows));
	if (!h->flows) {
		rc = -ENOMEM;
		goto err;
	}
	memset(h->flows, 0, h->nflows * sizeof(*h->flows));
	for (i = 0; i < h->nflows; i++)
		h->flows[i].evfd = -1;
	hdr = (struct dg_region_hdr *)h->region;
	hdr->magic = DG_REGION_MAGIC;
	hdr->version = DG_REGION_VERSION;
	hdr->nflows = h->nflows;
	hdr->slots = h->o.slots;
	hdr->flags = h->rflags;
	hdr->pay_shift = h->pay_shift;
	for (i = 0; i < h->nflows; i++) {
		struct dg_flow *f = &h->flows[i];

		f->h = h;
		f->idx = i;
		f->tx = (void *)(h->region + dg_tx_ring_off(&h->lay, i));
		f->rx = (void *)(h->region + dg_rx_ring_off(&h->lay, i));
		f->ctrl = (void *)(h->region + dg_ctrl_off(&h->lay, i));
		f->slots = h->o.slots;
		f->mask = h->o.slots - 1;
		f->rflags = hdr->flags;
		f->arena = malloc(DG_RX_ARENA + DG_RX_SLACK);
		f->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		f->ctrl->host_fd = f->evfd;
		f->mode = h->o.engine_addr
				  ? (uint8_t)(h->o.mode ? h->o.mode
							: DG_MODE_DOORBELL)
				  : DG_MODE_POLL;
		f->spin_us = h->o.spin_us ? h->o.spin_us : 50;
		f->yield_us = !h->o.yield_us		      ? 2000
			      : h->o.yield_us == DG_YIELD_OFF ? 0
							      : h->o.yield_us;
		f->pay_size = (uint32_t)h->lay.pay_size;
		f->pay_tx = f->pay_size ? h->region + dg_pay_tx_off(&h->lay, i)
					: NULL;
		f->pay_rx = f->pay_size ? h->region + dg_pay_rx_off(&h->lay, i)
					: NULL;
		f->large = h->o.large ? h->o.large : DG_LARGE_DEFAULT;
		/*
		 * With payload areas, nothing in ring frames takes more than
		 * half the ring: a message that would leaves it, so that no
		 * size between the ring's and the threshold is refused.
		 */
		if (f->pay_size &&
		    f->large > DG_FRAME_PAYLOAD +
				       (h->o.slots / 2 - 1) * DG_CONT_PAYLOAD)
			f->large = DG_FRAME_PAYLOAD +
				   (h->o.slots / 2 - 1) * DG_CONT_PAYLOAD;
		f->busy_poll = h->o.busy_poll != 0;
		f->resp_buf = malloc(DG_MAX_MSG);
		/* Untouched pages of it cost no memory. */
		f->heap = aligned_alloc(64, DG_FLOW_ARENA);
		if (!f->arena || !f->resp_buf || !f->heap || f->evfd < 0) {
			rc = f->evfd < 0 ? -EMFILE : -ENOMEM;
			goto err;
		}
	}
	if (h->o.mode < 0 || h->o.mode >= DG_MODE_COUNT) {
		rc = -EINVAL;
		goto err;
	}
	if (h->o.engine_addr) {
		rc = attach_rdma(h);
	} else if (h->o.shm_path) {
		rc = attach_shm(h, mfd);
	} else {
		rc = h->o.attach_local(h->o.local_arg, h->region, h->size);
		if (rc >= 0) {
			h->tenant = rc;
			rc = 0;
		}
	}
	if (rc)
		goto err;
	if (mfd >= 0)
		close(mfd);
	/* In-process: the engine left its eventfd in the header. */
	if (!h->o.engine_addr && !h->o.shm_path)
		h->engine_fd =
			__atomic_load_n(&hdr->engine_fd, __ATOMIC_ACQUIRE);
	for (i = 0; i < h->nflows; i++) {
		struct dg_flow *f = &h->flows[i];

		f->engine_sleep = &hdr->engine_sleep;
		f->kick = h->o.engine_addr    ? f->mode == DG_MODE_POLL
							? DG_KICK_NONE
							: DG_KICK_RDMA
			  : h->engine_fd >= 0 ? DG_KICK_SHM
					      : DG_KICK_NONE;
	}
	*out = h;
	return 0;
err:
	if (mfd >= 0)
		close(mfd);
	h->tenant = -1;
	dg_host_detach(h);
	return rc;
}

void dg_host_detach(struct dg_host *h)
{
	uint32_t i;

	if (!h)
		return;
	dg_wake_stop(h);
	if (h->tenant >= 0 && h->o.detach_local)
		h->o.detach_local(h->o.local_arg, h->tenant);
	/*
	 * The region first: its MR pins the endpoint's protection domain,
	 * which the endpoint frees. Disconnecting tells the engine; it frees
	 * the tenant. A daemon's tenant goes when its socket closes.
	 */
	dg_rdma_dereg(h->mr);
	dg_rdma_ep_destroy(h->ep);
	if (h->shm_sock >= 0)
		close(h->shm_sock);
	for (i = 0; h->flows && i < h->nflows; i++) {
		free(h->flows[i].arena);
		free(h->flows[i].resp_buf);
		free(h->flows[i].heap);
		if (h->flows[i].evfd >= 0)
			close(h->flows[i].evfd);
	}
	if (h->engine_fd_owned)
		close(h->engine_fd);
	pthread_mutex_destroy(&h->vlock);
	free(h->flows);
	if (h->region_mapped)
		munmap(h->region, h->size);
	else
		free(h->region);
	free(h);
}

int dg_host_check(struct dg_host *h)
{
	/* A system call: for waits and error paths, never per RPC. */
	if (h->ep) {
		int rc;

		if (__atomic_load_n(&h->broken, __ATOMIC_ACQUIRE))
			return -EIO;
		/* The waker thread looks at the connection too. */
		pthread_mutex_lock(&h->vlock);
		rc = dg_rdma_ep_check(h->ep);
		pthread_mutex_unlock(&h->vlock);
		return rc;
	}
	if (h->shm_sock >= 0) {
		struct pollfd p = {.fd = h->shm_sock, .events = POLLIN};

		/* The engine sends nothing after its reply: readable = gone. */
		if (poll(&p, 1, 0) > 0)
			return -ENOTCONN;
	}
	return 0;
}

struct dg_flow *dg_host_flow(struct dg_host *h, uint32_t i)
{
	return i < h->nflows ? &h->flows[i] : NULL;
}

uint32_t dg_host_nflows(const struct dg_host *h)
{
	return h->nflows;
}
