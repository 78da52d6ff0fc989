// SPDX-License-Identifier: MIT
/*
 * twovm-caller: synchronous echo calls for the two-machine tests
 * (tests/twovm/case.sh), in one of two modes:
 *
 *   twovm-caller --engine ADDR:PORT [--remote ADDR:PORT] --until-error
 *	Calls until the first call that fails (the machine behind --remote
 *	is killed meanwhile), prints when (CLOCK_REALTIME, so that the
 *	script can compare it with the time of the kill) and how long that
 *	call took, then goes on calling for --after-s seconds, printing each
 *	change of outcome (e.g. from timeouts to the engine's UNREACHABLE)
 *	and how long the slowest call took: every call returns, bounded by
 *	--call-timeout. Exit 0 when a failure came within --max-s, else 1.
 *
 *   twovm-caller --engine ADDR:PORT [--remote ADDR:PORT] --until-file F
 *	Calls until file F exists (at most --max-s); every call must
 *	succeed with the right data. Exit 0 when all did, 1 otherwise.
 *
 * Both touch --ready-file after --ready-after successful calls, and check
 * every response's bytes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dagger/dagger.h"

enum { FN_ECHO = 1 };

struct opts {
	char engine[64], remote[64];
	uint16_t engine_port, remote_port;
	const char *ready_file, *until_file;
	uint32_t ready_after, size, after_s, max_s;
	int call_timeout_ms, until_error;
};

static uint64_t clock_ns(clockid_t id)
{
	struct timespec t;

	clock_gettime(id, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static const char *status_str(int rc)
{
	return rc < 0 ? strerror(-rc) : dg_status_str(rc);
}

/* "ADDR[:PORT]" into addr and *port (unchanged when there is no port). */
static void split_addr(const char *s, char *addr, size_t cap, uint16_t *port)
{
	char *colon;

	snprintf(addr, cap, "%s", s);
	colon = strrchr(addr, ':');
	if (colon) {
		*colon = 0;
		*port = (uint16_t)strtoul(colon + 1, NULL, 0);
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: twovm-caller --engine ADDR[:PORT] [--remote "
		   "ADDR[:PORT]]\n"
		   "         (--until-error | --until-file FILE) [--ready-file "
		   "FILE]\n"
		   "         [--ready-after N] [--size BYTES] [--call-timeout "
		   "MS]\n"
		   "         [--after-s S] [--max-s S]\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"engine", required_argument, NULL, 'e'},
		{"remote", required_argument, NULL, 'r'},
		{"until-error", no_argument, NULL, 'E'},
		{"until-file", required_argument, NULL, 'U'},
		{"ready-file", required_argument, NULL, 'R'},
		{"ready-after", required_argument, NULL, 'n'},
		{"size", required_argument, NULL, 's'},
		{"call-timeout", required_argument, NULL, 't'},
		{"after-s", required_argument, NULL, 'a'},
		{"max-s", required_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	*o = (struct opts){.engine_port = 7471,
			   .remote_port = 7471,
			   .ready_after = 50,
			   .size = 64,
			   .after_s = 30,
			   .max_s = 300,
			   .call_timeout_ms = 2000};
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'e':
			split_addr(optarg, o->engine, sizeof(o->engine),
				   &o->engine_port);
			break;
		case 'r':
			split_addr(optarg, o->remote, sizeof(o->remote),
				   &o->remote_port);
			break;
		case 'E':
			o->until_error = 1;
			break;
		case 'U':
			o->until_file = optarg;
			break;
		case 'R':
			o->ready_file = optarg;
			break;
		case 'n':
			o->ready_after = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 's':
			o->size = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 't':
			o->call_timeout_ms = (int)strtol(optarg, NULL, 0);
			break;
		case 'a':
			o->after_s = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'm':
			o->max_s = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -1;
		}
	}
	if (optind != argc || !o->engine[0] || !o->size ||
	    o->size > DG_MAX_MSG || o->call_timeout_ms <= 0 || !o->max_s ||
	    o->until_error == !!o->until_file)
		return -1;
	return 0;
}

/* One echo call of o->size bytes; 0, or why it failed. *ns: its time. */
static int call(struct dg_flow *f, int conn, const struct opts *o, uint32_t seq,
		uint8_t *req, uint8_t *resp, uint64_t *ns)
{
	size_t rlen = DG_MAX_MSG;
	uint64_t t = now_ns();
	int rc;

	memset(req, (int)(seq & 0xff), o->size);
	rc = dg_call_sync(f, conn, FN_ECHO, req, o->size, resp, &rlen,
			  o->call_timeout_ms);
	*ns = now_ns() - t;
	if (!rc && (rlen != o->size || memcmp(req, resp, o->size)))
		rc = -EBADMSG;
	return rc;
}

static void mark_ready(const struct opts *o, uint64_t ok)
{
	FILE *f;

	if (!o->ready_file || ok != o->ready_after)
		return;
	f = fopen(o->ready_file, "w");
	if (f)
		fclose(f);
	printf("twovm-caller: ready after %llu calls\n",
	       (unsigned long long)ok);
	fflush(stdout);
}

static int run(struct dg_flow *f, int conn, const struct opts *o, uint8_t *req,
	       uint8_t *resp)
{
	uint64_t deadline = now_ns() + o->max_s * 1000000000ull;
	uint64_t ok = 0, ns, max_ns = 0, max_at = 0, t_err;
	uint32_t seq = 0, i;
	int rc = 0, last;

	while (now_ns() < deadline) {
		if (o->until_file && !access(o->until_file, F_OK))
			break;
		rc = call(f, conn, o, seq++, req, resp, &ns);
		if (rc)
			break;
		if (ns > max_ns) {
			max_ns = ns;
			max_at = clock_ns(CLOCK_REALTIME);
		}
		mark_ready(o, ++ok);
	}
	if (o->until_file) {
		if (rc || now_ns() >= deadline) {
			printf("twovm-caller: FAIL at %.3f: %s after %llu good "
			       "calls (the slowest good one %.1f ms, at "
			       "%.3f)\n",
			       clock_ns(CLOCK_REALTIME) / 1e9,
			       rc ? status_str(rc) : "no stop file in time",
			       (unsigned long long)ok, max_ns / 1e6,
			       max_at / 1e9);
			return 1;
		}
		printf("twovm-caller: %llu calls, 0 errors, the slowest %.1f "
		       "ms, at %.3f\n",
		       (unsigned long long)ok, max_ns / 1e6, max_at / 1e9);
		return 0;
	}
	if (!rc) {
		printf("twovm-caller: FAIL: no call failed within %u s "
		       "(%llu good calls)\n",
		       o->max_s, (unsigned long long)ok);
		return 1;
	}
	t_err = now_ns();
	printf("twovm-caller: first error at %.3f after %llu good calls: "
	       "%s (status %d); that call took %.1f ms\n",
	       clock_ns(CLOCK_REALTIME) / 1e9, (unsigned long long)ok,
	       status_str(rc), rc, ns / 1e6);
	/*
	 * Go on calling for --after-s seconds: every call must return (each
	 * is bounded by --call-timeout); print each change of outcome, e.g.
	 * when the engine notices the dead peer and answers at once.
	 */
	max_ns = 0;
	last = rc;
	for (i = 0; now_ns() - t_err < o->after_s * 1000000000ull; i++) {
		int r = call(f, conn, o, seq++, req, resp, &ns);

		if (ns > max_ns)
			max_ns = ns;
		if (r != last)
			printf("twovm-caller: %.1f s after the first error: "
			       "%s (status %d), in %.1f ms\n",
			       (now_ns() - t_err) / 1e9,
			       r ? status_str(r) : "ok", r, ns / 1e6);
		last = r;
	}
	printf("twovm-caller: %u calls in the %u s after the first error, "
	       "the slowest returned in %.1f ms; the last: %s\n",
	       i, o->after_s, max_ns / 1e6, last ? status_str(last) : "ok");
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct dg_host_opts ho = {0};
	struct dg_host *h;
	struct dg_flow *f;
	uint8_t *req, *resp;
	uint64_t until;
	int conn, rc;

	if (parse(argc, argv, &o)) {
		usage(stderr);
		return 2;
	}
	ho.engine_addr = o.engine;
	ho.engine_port = o.engine_port;
	rc = dg_host_attach(&ho, &h);
	if (rc) {
		fprintf(stderr, "twovm-caller: cannot attach to %s:%u: %s\n",
			o.engine, o.engine_port, strerror(-rc));
		return 1;
	}
	f = dg_host_flow(h, 0);
	/* The server may still be registering: retry for 60 s. */
	until = now_ns() + 60000000000ull;
	while ((conn = dg_connect(f, o.remote, o.remote[0] ? o.remote_port : 0,
				  "echo", 10000)) == -ENOENT &&
	       now_ns() < until)
		usleep(100000);
	req = malloc(DG_MAX_MSG);
	resp = malloc(DG_MAX_MSG);
	if (conn < 0 || !req || !resp) {
		fprintf(stderr, "twovm-caller: connect: %s\n",
			strerror(conn < 0 ? -conn : ENOMEM));
		rc = 1;
	} else {
		rc = run(f, conn, &o, req, resp);
		dg_close(f, conn);
	}
	free(req);
	free(resp);
	dg_host_detach(h);
	return rc;
}
