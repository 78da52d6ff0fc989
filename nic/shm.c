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

static void reply(int fd, int status, int tenant, uint32_t engine_id)
{
	struct dg_attach_rep rep = {.magic = DG_SHM_MAGIC,
				    .status = status,
				    .tenant = tenant < 0 ? 0 : (uint32_t)tenant,
				    .engine_id = engine_id};

	/* One small datagram on a fresh socket: it never blocks. */
	if (send(fd, &rep, sizeof(rep), MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
	    status == 0)
		fprintf(stderr, "dagger-nic: attach reply: %s\n",
			strerror(errno));
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
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} cm;
	struct dg_shm_attach_req req;
	struct iovec iov = {&req, sizeof(req)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cm.buf,
			    .msg_controllen = sizeof(cm.buf)};
	struct dg_region_layout lay;
	struct dg_region_hdr hdr;
	struct dg_hostmem *hm;
	struct cmsghdr *c;
	int mfd = -1, rc, i, nfd;
	void *map = NULL;
	ssize_t k;

	memset(&req, 0, sizeof(req));
	k = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	/* Every descriptor that came with it is ours to close. */
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (i = 0; i < nfd; i++) {
			int x;

			memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (mfd < 0)
				mfd = x;
			else
				close(x);
		}
	}
	rc = -EPROTO;
	if (k != (ssize_t)sizeof(req) ||
	    (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    req.magic != DG_SHM_MAGIC || mfd < 0)
		goto refuse;
	if (req.version != DG_REGION_VERSION) {
		rc = -EPROTO;
		goto refuse;
	}
	rc = -EINVAL;
	if (dg_region_layout(req.nflows, req.slots, &lay) ||
	    dg_region_bytes(&lay) != req.len)
		goto refuse;
	rc = map_region(mfd, req.len, &map);
	if (rc)
		goto refuse;
	close(mfd);
	mfd = -1;
	rc = dg_hostmem_shm_create(map, req.len, fd, &hm);
	if (rc) {
		munmap(map, req.len);
		goto refuse;
	}
	hdr = (struct dg_region_hdr){.magic = DG_REGION_MAGIC,
				     .version = req.version,
				     .nflows = req.nflows,
				     .slots = req.slots,
				     .flags = req.flags & DG_RING_F_CSUM};
	rc = nic_tenant_init(n, hm, &hdr, NULL);
	if (rc < 0) {
		n->attach_refused++;
		reply(fd, rc, -1, n->o.engine_id);
		hm->ops->destroy(hm); /* unmaps, closes fd */
		return 1;
	}
	reply(fd, 0, rc, n->o.engine_id);
	return 1;
refuse:
	n->attach_refused++;
	if (n->o.verbose || rc != -EPROTO)
		fprintf(stderr,
			"dagger-nic: refused a shared-memory attach: %s\n",
			strerror(-rc));
	if (mfd >= 0)
		close(mfd);
	if (k > 0)
		reply(fd, rc, -1, n->o.engine_id);
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
