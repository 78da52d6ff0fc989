// SPDX-License-Identifier: MIT
/*
 * test_shm: the engine as a daemon for processes on this machine
 * (dagger-nic --shm): hosts attach over a unix socket with a sealed memfd
 * and talk to the engine through shared memory only.
 *
 *  - echo between two processes through the daemon, every size class
 *    across frame boundaries and ring wraps, on plain and checksummed
 *    rings, bytes checked;
 *  - a server process killed (SIGKILL) with a call in flight: the caller
 *    gets UNREACHABLE, the engine frees the tenant, the name takes no new
 *    callers;
 *  - a client process killed with a call in flight: the engine frees its
 *    tenant and connections, the late response is dropped and counted,
 *    others are served on;
 *  - attaches that must be refused (garbage, wrong version, wrong size,
 *    an unsealed memfd, no memfd, a connection that sends nothing), each
 *    answered with its errno and counted, the engine serving on.
 *
 * Counters are read with dg_nic_stats(), never from printed text.
 * Processes signal readiness through pipes; nothing waits on a sleep.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dagger/ctrl.h"
#include "dagger/dagger.h"
#include "engine.h"

enum { FN_ECHO = 1, FN_HOLD = 2 };

static struct {
	struct dg_nic *nic;
	pthread_t thr;
	char dir[64], path[96];
} E;

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static void *engine_main(void *arg)
{
	dg_nic_run(arg);
	return NULL;
}

static int echo(void *arg, const struct dg_request *req,
		struct dg_response *resp)
{
	(void)arg;
	memcpy(resp->data, req->data, req->len);
	resp->len = req->len;
	return 0;
}

/* Holds the call until the byte the request names arrives on a pipe. */
static int hold_fd = -1;

static int hold(void *arg, const struct dg_request *req,
		struct dg_response *resp)
{
	char b;

	(void)arg;
	(void)req;
	if (read(hold_fd, &b, 1) != 1)
		return DG_ST_APP_BASE;
	resp->len = 0;
	return 0;
}

static const struct dg_handler handlers[] = {{FN_ECHO, echo}, {FN_HOLD, hold}};
static const struct dg_service_def svc = {
	.name = "echo", .handlers = handlers, .nhandlers = 2};

static int attach_shm(uint32_t slots, int csum, struct dg_host **h)
{
	struct dg_host_opts o = {
		.shm_path = E.path, .slots = slots, .csum = csum};

	return dg_host_attach(&o, h);
}

static struct dg_nic_stats stats(void)
{
	struct dg_nic_stats s;

	assert_int_equal(dg_nic_stats(E.nic, &s, 5000), 0);
	return s;
}

/* Waits (polling the engine's counters) until tenants == want. */
static void wait_tenants(uint32_t want)
{
	uint64_t until = now_ms() + 10000;

	while (stats().tenants != want) {
		if (now_ms() > until)
			fail_msg("engine holds %u tenants, not %u after 10 s",
				 stats().tenants, want);
		sched_yield();
	}
}

static int run_role(char *const argv[]);

/*
 * The test's other processes: a fork that runs a role (--server,
 * --client). Under ASan the fork runs this binary again in that role
 * instead (main()): library code in a fork of this multithreaded process
 * could inherit an allocator lock the engine's thread held, and hang.
 * Elsewhere the fork runs the role itself (an arm64 build under qemu-user
 * could not exec itself). Descriptors (pipes) are inherited; the child
 * dies with the test, whatever becomes of it.
 */
static pid_t spawn_role(char *const argv[])
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
#ifdef __SANITIZE_ADDRESS__
		execv("/proc/self/exe", argv);
#endif
		_exit(run_role(argv));
	}
	return pid;
}

/*
 * A server process: attaches, serves "echo" on one dispatch thread,
 * writes one byte to ready when it serves, then waits to be killed (or
 * for its stdin pipe to close). Handlers of FN_HOLD wait on hold.
 */
static int server_role(int csum, int hold_rd, int ready)
{
	struct dg_server *s;
	struct dg_host *h;

	hold_fd = hold_rd;
	if (attach_shm(64, csum, &h) || dg_server_start(h, &svc, 0, 1, &s))
		return 3;
	if (write(ready, "r", 1) != 1)
		return 4;
	for (;;)
		pause();
}

static pid_t fork_server(int csum, int hold_rd)
{
	char a_csum[8], a_hold[16], a_rd[16], self[] = "test_shm",
					      role[] = "--server";
	char *argv[] = {self, role, a_csum, a_hold, a_rd, E.path, NULL};
	int rp[2];
	pid_t pid;
	char b;

	assert_int_equal(pipe(rp), 0);
	snprintf(a_csum, sizeof(a_csum), "%d", csum);
	snprintf(a_hold, sizeof(a_hold), "%d", hold_rd);
	snprintf(a_rd, sizeof(a_rd), "%d", rp[1]);
	pid = spawn_role(argv);
	close(rp[1]);
	assert_int_equal(read(rp[0], &b, 1), 1);
	close(rp[0]);
	return pid;
}

static int connect_echo(struct dg_flow *f)
{
	int c = dg_connect(f, NULL, 0, "echo", 5000);

	assert_true(c >= 0);
	return c;
}

static int group_setup(void **state)
{
	struct dg_nic_opts o = {0};

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	snprintf(E.dir, sizeof(E.dir), "/tmp/dg-shm-test.XXXXXX");
	assert_non_null(mkdtemp(E.dir));
	snprintf(E.path, sizeof(E.path), "%s/engine.sock", E.dir);
	o.shm_path = E.path;
	assert_int_equal(dg_nic_create(&o, &E.nic), 0);
	assert_int_equal(pthread_create(&E.thr, NULL, engine_main, E.nic), 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dg_nic_stop(E.nic);
	pthread_join(E.thr, NULL);
	dg_nic_destroy(E.nic);
	/* The engine removed its socket: the directory is empty. */
	assert_int_equal(rmdir(E.dir), 0);
	return 0;
}

/*
 * Every size class (one frame, two frames in one piece and wrapped, many
 * frames, the largest) at every ring offset: 64-slot rings wrap every few
 * calls, so each size lands at many positions relative to the end.
 */
static void echo_sizes(int csum)
{
	static const uint32_t sizes[] = {0,   1,   7,	31,   32,   33,
					 63,  64,  87,	88,   89,   143,
					 144, 145, 200, 1000, 1080, 3000};
	static uint8_t req[DG_MAX_INLINE], out[DG_MAX_INLINE];
	struct dg_host *h;
	struct dg_flow *f;
	uint32_t round, i, seed = 7;
	pid_t srv = fork_server(csum, -1);
	int conn, status;

	assert_int_equal(attach_shm(64, csum, &h), 0);
	f = dg_host_flow(h, 0);
	conn = connect_echo(f);
	for (round = 0; round < 64; round++) {
		for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			uint32_t n = sizes[(i + round) % 18], k;
			size_t olen = sizeof(out);

			for (k = 0; k < n; k++)
				req[k] = (uint8_t)((seed = seed * 1103515245u +
							   12345u) >>
						   16);
			assert_int_equal(dg_call_sync(f, conn, FN_ECHO, req, n,
						      out, &olen, 5000),
					 0);
			assert_int_equal(olen, n);
			assert_memory_equal(out, req, n);
		}
	}
	/*
	 * dg_call_sync drops answers to other calls: a duplicate would pass
	 * unseen, but not uncounted. One completion per call, no more.
	 */
	{
		struct dg_flow_stats st;

		dg_flow_stats(f, &st);
		assert_int_equal(st.calls, 64 * 18);
		assert_int_equal(st.completions, st.calls);
	}
	dg_host_detach(h);
	kill(srv, SIGKILL);
	assert_int_equal(waitpid(srv, &status, 0), srv);
	wait_tenants(0);
}

static void test_echo_sizes(void **state)
{
	(void)state;
	echo_sizes(0);
}

static void test_echo_sizes_csum(void **state)
{
	(void)state;
	echo_sizes(1);
}

/* The server process dies with a call in flight. */
static void test_server_killed(void **state)
{
	struct dg_completion c;
	struct dg_host *h;
	struct dg_flow *f;
	uint64_t t0;
	uint32_t id;
	int hp[2], conn, st;
	pid_t srv;

	(void)state;
	assert_int_equal(pipe(hp), 0);
	srv = fork_server(0, hp[0]);
	assert_int_equal(attach_shm(64, 0, &h), 0);
	wait_tenants(2);
	f = dg_host_flow(h, 0);
	conn = connect_echo(f);
	assert_int_equal(dg_call(f, conn, FN_HOLD, "x", 1, &id), 0);
	/* Nothing comes back while the handler holds it. */
	assert_int_equal(dg_wait(f, id, &c, 200), -ETIMEDOUT);
	t0 = now_ms();
	assert_int_equal(kill(srv, SIGKILL), 0);
	assert_int_equal(waitpid(srv, &st, 0), srv);
	assert_int_equal(dg_wait(f, id, &c, 10000), 0);
	assert_int_equal(c.status, DG_ST_UNREACHABLE);
	printf("# UNREACHABLE %llu ms after the kill\n",
	       (unsigned long long)(now_ms() - t0));
	wait_tenants(1);
	/* Its name has no server any more: no new callers. */
	assert_int_equal(dg_connect(f, NULL, 0, "echo", 2000), -ENOENT);
	dg_host_detach(h);
	wait_tenants(0);
	close(hp[0]);
	close(hp[1]);
}

/*
 * A client process dies with a call in flight: the engine frees it; the
 * server's answer, once it comes, finds no client and is dropped.
 */
static void test_client_killed(void **state)
{
	struct dg_nic_stats s0, s1;
	struct dg_server *s;
	struct dg_host *h, *c2;
	int hp[2], rp[2], st, conn;
	char b;
	pid_t cli;
	size_t olen;
	uint8_t out[8];

	(void)state;
	assert_int_equal(pipe(hp), 0);
	assert_int_equal(pipe(rp), 0);
	hold_fd = hp[0];
	assert_int_equal(attach_shm(64, 0, &h), 0);
	assert_int_equal(dg_server_start(h, &svc, 0, 1, &s), 0);
	{
		char a_rd[16], self[] = "test_shm", role[] = "--client";
		char *argv[] = {self, role, a_rd, E.path, NULL};

		snprintf(a_rd, sizeof(a_rd), "%d", rp[1]);
		cli = spawn_role(argv);
	}
	assert_int_equal(read(rp[0], &b, 1), 1);
	wait_tenants(2);
	s0 = stats();
	assert_int_equal(kill(cli, SIGKILL), 0);
	assert_int_equal(waitpid(cli, &st, 0), cli);
	wait_tenants(1);
	s1 = stats();
	assert_int_equal(s1.conns, s0.conns - 1);
	/* Let the held call answer: its client is gone, so it is dropped. */
	assert_int_equal(write(hp[1], "g", 1), 1);
	{
		uint64_t until = now_ms() + 10000;

		while (stats().drops[DG_NIC_DROP_BAD_CONN] ==
		       s1.drops[DG_NIC_DROP_BAD_CONN]) {
			assert_true(now_ms() < until);
			sched_yield();
		}
	}
	/* And the engine serves others on. */
	assert_int_equal(attach_shm(64, 0, &c2), 0);
	conn = connect_echo(dg_host_flow(c2, 0));
	olen = sizeof(out);
	assert_int_equal(dg_call_sync(dg_host_flow(c2, 0), conn, FN_ECHO, "ok",
				      2, out, &olen, 5000),
			 0);
	assert_memory_equal(out, "ok", 2);
	dg_host_detach(c2);
	dg_server_stop(s);
	dg_host_detach(h);
	wait_tenants(0);
	close(hp[0]);
	close(hp[1]);
	close(rp[0]);
	close(rp[1]);
}

/* ---- attaches that must be refused ---------------------------------- */

static int raw_connect(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(a.sun_path, E.path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* A memfd of len bytes, with the given seals. */
static int memfd(uint64_t len, int seals)
{
	int fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)len), 0);
	if (seals)
		assert_int_equal(fcntl(fd, F_ADD_SEALS, seals), 0);
	return fd;
}

/*
 * Sends len bytes of msg with nfd descriptors as SCM_RIGHTS and returns
 * the status the engine answered with; 1 when it closed without one.
 */
static int raw_attach_fds(const void *msg, size_t len, const int *fds, int nfd)
{
	union {
		struct cmsghdr c;
		char buf[CMSG_SPACE(8 * sizeof(int))];
	} cm;
	struct iovec iov = {(void *)msg, len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct dg_attach_rep rep;
	struct pollfd p;
	int fd = raw_connect();
	ssize_t k;

	if (nfd > 0) {
		struct cmsghdr *c;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = CMSG_SPACE((size_t)nfd * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfd * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfd * sizeof(int));
	}
	assert_int_equal(sendmsg(fd, &mh, 0), (ssize_t)len);
	p = (struct pollfd){.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 10000), 1);
	k = recv(fd, &rep, sizeof(rep), 0);
	close(fd);
	if (k == 0)
		return 1;
	assert_int_equal(k, sizeof(rep));
	assert_int_equal(rep.magic, DG_SHM_MAGIC);
	return rep.status;
}

/* The memfd and one flow eventfd, as a host sends them. */
static int raw_attach(const void *msg, size_t len, int mfd)
{
	int fds[2] = {mfd, eventfd(0, EFD_CLOEXEC)}, rc;

	assert_true(fds[1] >= 0);
	rc = raw_attach_fds(msg, len, fds, 2);
	close(fds[1]);
	return rc;
}

static void test_bad_attach(void **state)
{
	struct dg_region_layout lay;
	struct dg_shm_attach_req req;
	struct dg_host *h;
	uint64_t refused;
	int seals = F_SEAL_SHRINK | F_SEAL_GROW, fd, rp, k;
	uint8_t junk[24];

	(void)state;
	assert_int_equal(dg_region_layout(1, 64, &lay), 0);
	req = (struct dg_shm_attach_req){.magic = DG_SHM_MAGIC,
					 .version = DG_REGION_VERSION,
					 .nflows = 1,
					 .slots = 64,
					 .len = dg_region_bytes(&lay)};
	refused = stats().attach_refused;
	memset(junk, 0xa5, sizeof(junk));
	/* Garbage, with a memfd. */
	fd = memfd(req.len, seals);
	assert_int_equal(raw_attach(junk, sizeof(junk), fd), -EPROTO);
	/* No descriptor at all. */
	assert_int_equal(raw_attach_fds(&req, sizeof(req), NULL, 0), -EPROTO);
	/* Another version of the region layout. */
	req.version = DG_REGION_VERSION + 1;
	assert_int_equal(raw_attach(&req, sizeof(req), fd), -EPROTO);
	req.version = DG_REGION_VERSION;
	/* A length that is not the layout's, then a memfd of another size. */
	req.len += 4096;
	assert_int_equal(raw_attach(&req, sizeof(req), fd), -EINVAL);
	req.len -= 4096;
	close(fd);
	fd = memfd(req.len + 4096, seals);
	assert_int_equal(raw_attach(&req, sizeof(req), fd), -EINVAL);
	close(fd);
	/* A memfd the host could still shrink under the engine. */
	fd = memfd(req.len, F_SEAL_GROW);
	assert_int_equal(raw_attach(&req, sizeof(req), fd), -EPERM);
	close(fd);
	/* Not a memfd: a pipe. */
	{
		int pp[2];

		assert_int_equal(pipe(pp), 0);
		assert_int_equal(raw_attach(&req, sizeof(req), pp[0]), -EINVAL);
		/* A memfd, but no eventfd for the flow: then a pipe as it. */
		fd = memfd(req.len, seals);
		assert_int_equal(raw_attach_fds(&req, sizeof(req), &fd, 1),
				 -EINVAL);
		{
			int two[2] = {fd, pp[1]};

			assert_int_equal(
				raw_attach_fds(&req, sizeof(req), two, 2),
				-EINVAL);
		}
		close(fd);
		close(pp[0]);
		close(pp[1]);
	}
	assert_int_equal(stats().attach_refused, refused + 9);
	assert_int_equal(stats().tenants, 0);
	/* A connection that never sends its request is closed (5 s). */
	rp = raw_connect();
	{
		struct pollfd p = {.fd = rp, .events = POLLIN};
		char b;

		assert_int_equal(poll(&p, 1, 15000), 1);
		k = (int)recv(rp, &b, 1, 0);
		assert_int_equal(k, 0);
	}
	close(rp);
	assert_int_equal(stats().attach_refused, refused + 10);
	/* And a good attach still works. */
	assert_int_equal(attach_shm(64, 0, &h), 0);
	wait_tenants(1);
	dg_host_detach(h);
	wait_tenants(0);
}

/* A client process: a call held by the server, then it waits to die. */
static int client_role(int ready)
{
	struct dg_host *ch;
	uint32_t id;
	int cn;

	if (attach_shm(64, 0, &ch))
		return 3;
	cn = dg_connect(dg_host_flow(ch, 0), NULL, 0, "echo", 5000);
	if (cn < 0 || dg_call(dg_host_flow(ch, 0), cn, FN_HOLD, "y", 1, &id))
		return 4;
	if (write(ready, "c", 1) != 1)
		return 5;
	for (;;)
		pause();
}

/* The roles of the test's other processes (spawn_role). */
static int run_role(char *const argv[])
{
	int n = 0;

	while (argv[n])
		n++;
	if (n == 6 && !strcmp(argv[1], "--server")) {
		if (argv[5] != E.path) /* a fork that could not exec: set */
			snprintf(E.path, sizeof(E.path), "%s", argv[5]);
		return server_role(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	}
	if (n == 4 && !strcmp(argv[1], "--client")) {
		if (argv[3] != E.path)
			snprintf(E.path, sizeof(E.path), "%s", argv[3]);
		return client_role(atoi(argv[2]));
	}
	return 2;
}

/*
 * One user cannot take every tenant slot of the daemon: a quarter of them
 * (16) per user (SO_PEERCRED); the next attach of the same user is refused
 * -EDQUOT, counted in quota_refused and attach_refused; once one of its
 * tenants detaches, the next attach is taken.
 */
static void test_tenant_share(void **state)
{
	struct dg_host *h[17];
	struct dg_nic_stats s0 = stats(), s1;
	uint32_t i, mine = s0.shm_tenants;
	int rc;

	(void)state;
	assert_true(mine < 16);
	for (i = 0; i < 16 - mine; i++)
		assert_int_equal(attach_shm(64, 0, &h[i]), 0);
	rc = attach_shm(64, 0, &h[i]);
	assert_int_equal(rc, -EDQUOT);
	s1 = stats();
	assert_int_equal(s1.quota_refused - s0.quota_refused, 1);
	assert_int_equal(s1.attach_refused - s0.attach_refused, 1);
	assert_int_equal(s1.shm_tenants, 16);
	dg_host_detach(h[0]);
	wait_tenants(s1.tenants - 1);
	assert_int_equal(attach_shm(64, 0, &h[0]), 0);
	for (i = 0; i < 16 - mine; i++)
		dg_host_detach(h[i]);
	wait_tenants(s0.tenants);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_echo_sizes),
		cmocka_unit_test(test_echo_sizes_csum),
		cmocka_unit_test(test_server_killed),
		cmocka_unit_test(test_client_killed),
		cmocka_unit_test(test_bad_attach),
		cmocka_unit_test(test_tenant_share),
	};

	if (argc > 1 && argv[1][0] == '-')
		return run_role(argv);
	return cmocka_run_group_tests_name("shm", tests, group_setup,
					   group_teardown);
}
