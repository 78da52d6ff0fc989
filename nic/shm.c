// SPDX-License-Identifier: MIT
/*
 * shm.c - the engine daemon's unix socket: host processes on this machine
 * attach through it, passing their region as a sealed memfd (dagger/ctrl.h,
 * struct dg_shm_attach_req), and then talk to the engine only through that
 * shared memory, exactly as an RDMA tenant does through READ and WRITE.
 * Everything here is non-blocking: the loop accepts, and a connection whose
 * request has not arrived yet waits in a small table with a deadline.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine_impl.h"

/* How long an accepted connection may take to send its request. */
#define SHM_REQ_TIMEOUT_MS 5000u

static int sun_of(const char *path, struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (!path || !path[0] || strlen(path) >= sizeof(a->sun_path))
		return -ENAMETOOLONG;
	strcpy(a->sun_path, path);
	return 0;
}

int nic_shm_listen(struct dg_nic *n, const char *path)
{
	struct sockaddr_un a;
	int fd, rc = sun_of(path, &a);

	if (rc)
		return rc;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = bind(fd, (struct sockaddr *)&a, sizeof(a)) ? -errno : 0;
	if (rc == -EADDRINUSE) {
		/* A socket file: another engine's, or one left by a crash. */
		int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		bool live = probe >= 0 && connect(probe, (struct sockaddr *)&a,
						  sizeof(a)) == 0;

		if (probe >= 0)
			close(probe);
		if (live) {
			close(fd);
			return -EADDRINUSE; /* an engine serves it */
		}
		unlink(path);
		rc = bind(fd, (struct sockaddr *)&a, sizeof(a)) ? -errno : 0;
	}
	if (!rc && listen(fd, 64))
		rc = -errno;
	if (rc) {
		close(fd);
		return rc;
	}
	n->shm_fd = fd;
	snprintf(n->shm_path, sizeof(n->shm_path), "%s", path);
	return 0;
}

void nic_shm_close(struct dg_nic *n)
{
	uint32_t i;

	for (i = 0; i < MAX_SHM_PENDING; i++)
		if (n->shm_pend[i].fd >= 0) {
			close(n->shm_pend[i].fd);
			n->shm_pend[i].fd = -1;
		}
	if (n->shm_fd >= 0) {
		close(n->shm_fd);
		unlink(n->shm_path);
		n->shm_fd = -1;
	}
}

/*
 * The answer to an attach; a successful one carries the engine's eventfd
 * (SCM_RIGHTS), which the host writes to wake the engine when it sleeps.
 */
static void reply(int fd, int status, int tenant, uint32_t engine_id,
		  int wake_fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct dg_attach_rep rep = {.magic = DG_SHM_MAGIC,
				    .status = status,
				    .tenant = tenant < 0 ? 0 : (uint32_t)tenant,
				    .engine_id = engine_id};
	struct iovec iov = {&rep, sizeof(rep)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	if (status == 0) {
		struct cmsghdr *c;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &wake_fd, sizeof(int));
	}
	/* One small datagram on a fresh socket: it never blocks. */
	if (sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && status == 0)
		fprintf(stderr, "dagger-nic: attach reply: %s\n",
			strerror(errno));
}

/*
 * Whether fd is an eventfd (what a host must send for each flow: the
 * engine writes 8 bytes to it to wake the flow's thread). Anything else
 * could block the engine or raise SIGPIPE; it is refused. Made
 * non-blocking, so a full counter can never stall the loop.
 */
static bool is_eventfd(int fd)
{
	char path[64], link[64];
	ssize_t k;
	int fl;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	k = readlink(path, link, sizeof(link) - 1);
	if (k <= 0)
		return false;
	link[k] = 0;
	if (strcmp(link, "anon_inode:[eventfd]"))
		return false;
	fl = fcntl(fd, F_GETFL);
	return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

/*
 * Checks the memfd a host sent against what its request declares: a
 * regular file of exactly len bytes that can neither shrink nor grow (a
 * host that could truncate it under our mapping would make the engine
 * fault), and maps it.
 */
static int map_region(int mfd, uint64_t len, void **out)
{
	struct stat st;
	int seals;
	void *p;

	if (fstat(mfd, &st) || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != len)
		return -EINVAL;
	seals = fcntl(mfd, F_GET_SEALS);
	if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) !=
				 (F_SEAL_SHRINK | F_SEAL_GROW))
		return -EPERM;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

/*
 * Reads a pending connection's request. Returns 1 when the connection is
 * done with (a tenant, or refused and closed), 0 while its request has
 * not arrived.
 */
static int take_request(struct dg_nic *n, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE((1 + DG_MAX_FLOWS + 4) * sizeof(int))];
	} cm;
	struct dg_shm_attach_req req;
	struct iovec iov = {&req, sizeof(req)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cm.buf,
			    .msg_controllen = sizeof(cm.buf)};
	int fds[1 + DG_MAX_FLOWS + 4];
	struct dg_region_layout lay;
	struct dg_region_hdr hdr;
	struct dg_hostmem *hm;
	struct cmsghdr *c;
	int64_t uid;
	int rc, i, nfd = 0;
	void *map = NULL;
	ssize_t k;

	memset(&req, 0, sizeof(req));
	k = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	/* Every descriptor that came with it is ours: kept or closed. */
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		int m;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		m = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (i = 0; i < m; i++) {
			int x;

			memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (nfd < (int)(sizeof(fds) / sizeof(fds[0])))
				fds[nfd++] = x;
			else
				close(x);
		}
	}
	rc = -EPROTO;
	/* The memfd, then one eventfd per flow. */
	if (k != (ssize_t)sizeof(req) ||
	    (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    req.magic != DG_SHM_MAGIC || nfd < 1 ||
	    req.version != DG_REGION_VERSION)
		goto refuse;
	/* Its user, as the kernel tells: one user cannot take every slot. */
	{
		struct ucred cr;
		socklen_t cl = sizeof(cr);

		uid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0
			      ? (int64_t)cr.uid
			      : NO_UID;
	}
	rc = -EDQUOT;
	if (nic_ident_tenants(n, uid, NULL) >= IDENT_MAX_TENANTS) {
		n->quota_refused++;
		goto refuse;
	}
	rc = -EINVAL;
	if (dg_region_layout_pay(req.nflows, req.slots, req.pay_shift, &lay) ||
	    dg_region_bytes(&lay) != req.len || (uint32_t)nfd != 1 + req.nflows)
		goto refuse;
	for (i = 1; i < nfd; i++)
		if (!is_eventfd(fds[i]))
			goto refuse;
	rc = map_region(fds[0], req.len, &map);
	if (rc)
		goto refuse;
	rc = dg_hostmem_shm_create(map, req.len, fd, &hm);
	if (rc) {
		munmap(map, req.len);
		goto refuse;
	}
	hdr = (struct dg_region_hdr){.magic = DG_REGION_MAGIC,
				     .version = req.version,
				     .nflows = req.nflows,
				     .slots = req.slots,
				     .flags = req.flags & DG_RING_F_CSUM,
				     .pay_shift = req.pay_shift};
	rc = nic_tenant_init(n, hm, &hdr, NULL, DG_MODE_POLL, fds + 1,
			     (uint32_t)nfd - 1);
	if (rc < 0) {
		n->attach_refused++;
		reply(fd, rc, -1, n->o.engine_id, -1);
		hm->ops->destroy(hm); /* unmaps, closes fd */
		for (i = 0; i < nfd; i++)
			close(fds[i]);
		return 1;
	}
	close(fds[0]);
	n->tenants[rc].uid = uid; /* its identity, for services too */
	reply(fd, 0, rc, n->o.engine_id, n->wake_fd);
	return 1;
refuse:
	n->attach_refused++;
	if (n->o.verbose || rc != -EPROTO)
		fprintf(stderr,
			"dagger-nic: refused a shared-memory attach: %s\n",
			strerror(-rc));
	for (i = 0; i < nfd; i++)
		close(fds[i]);
	if (k > 0)
		reply(fd, rc, -1, n->o.engine_id, -1);
	close(fd);
	return 1;
}

void nic_shm_accept(struct dg_nic *n)
{
	uint64_t now = mono_us() / 1000u;
	uint32_t i;
	int fd;

	while ((fd = accept4(n->shm_fd, NULL, NULL,
			     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		for (i = 0; i < MAX_SHM_PENDING && n->shm_pend[i].fd >= 0; i++)
			;
		if (i == MAX_SHM_PENDING) {
			close(fd); /* too many half-open attaches */
			continue;
		}
		n->shm_pend[i].fd = fd;
		n->shm_pend[i].deadline_ms = now + SHM_REQ_TIMEOUT_MS;
	}
	for (i = 0; i < MAX_SHM_PENDING; i++) {
		struct shm_pending *p = &n->shm_pend[i];

		if (p->fd < 0)
			continue;
		if (take_request(n, p->fd)) {
			p->fd = -1;
		} else if (now > p->deadline_ms) {
			n->attach_refused++;
			close(p->fd);
			p->fd = -1;
		}
	}
}
