// SPDX-License-Identifier: MIT
/*
 * dagger-echo: an echo service and its client over a NIC engine.
 *
 *   dagger-echo server --engine ADDR[:PORT] [--threads N] [--workers N]
 *   dagger-echo client --engine ADDR[:PORT] [-n RPCS] [-s SIZE]
 *
 * Both attach to the engine (dagger-nic) over RDMA; the engine polls their
 * rings with RDMA READ and delivers with RDMA WRITE. The client makes
 * synchronous calls and prints RPC count, errors, p50/p99/p99.9 latency
 * and throughput.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dagger/dagger.h"

enum { FN_ECHO = 1 };

static volatile sig_atomic_t stop;
static uint32_t delay_us; /* server: work per request, busy-waited */

static uint64_t now_ns(void);

static void on_sig(int s)
{
	(void)s;
	stop = 1;
}

static int echo(void *arg, const struct dg_request *req,
		struct dg_response *resp)
{
	(void)arg;
	if (delay_us) {
		uint64_t until = now_ns() + delay_us * 1000ull;

		while (now_ns() < until)
			;
	}
	memcpy(resp->data, req->data, req->len);
	resp->len = req->len;
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dagger-echo server --engine ENGINE [--threads N] "
		"[--delay-us US]\n"
		"                         [--lb rr|static|random|key] "
		"[--workers N] [--wait S]\n"
		"                         [--service NAME]\n"
		"       dagger-echo client --engine ENGINE "
		"[--remote ADDR[:PORT]] [--wait S] [-n RPCS] [-s SIZE]\n"
		"--mode poll|doorbell|push: how the engine learns of new "
		"frames (RDMA;\n"
		"default doorbell, or $DG_MODE).\n"
		"ENGINE is ADDR[:PORT] (RDMA; port 7471 by default) or "
		"unix:PATH (an\n"
		"engine daemon on this machine: dagger-nic --shm PATH).\n"
		"--remote names the engine the echo server is behind, when it\n"
		"is not the client's own engine; --wait retries the attach "
		"(server\n"
		"and client) and the connection for S seconds while the "
		"engine is\n"
		"not up or the service not registered yet.\n"
		"--workers N runs the handlers on a pool of N worker "
		"threads behind\n"
		"the --threads dispatch threads (default: on the dispatch "
		"threads).\n"
		"--service NAME serves, or calls, NAME instead of \"echo\" "
		"(one\nservice takes at most 64 server flows).\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"engine", required_argument, NULL, 'e'},
		{"threads", required_argument, NULL, 't'},
		{"remote", required_argument, NULL, 'r'},
		{"wait", required_argument, NULL, 'w'},
		{"delay-us", required_argument, NULL, 'd'},
		{"lb", required_argument, NULL, 'l'},
		{"mode", required_argument, NULL, 'm'},
		{"workers", required_argument, NULL, 'W'},
		{"service", required_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const struct dg_handler hs[] = {{FN_ECHO, echo}};
	struct dg_service_def svc = {
		.name = "echo", .handlers = hs, .nhandlers = 1};
	int lb;
	struct dg_host_opts ho = {.engine_port = 7471};
	uint32_t threads = 1, n = 10000, size = 64, i, errors = 0, workers = 0;
	char addr[64] = "", remote[64] = "", spec[160] = "", where[200];
	char service[DG_NAME_MAX] = "echo";
	char *colon;
	uint16_t rport = 0;
	uint32_t wait_s = 0;
	struct dg_host *h;
	int c, rc;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "e:t:r:w:d:n:s:l:m:h", lo, NULL)) !=
	       -1) {
		switch (c) {
		case 'e':
			snprintf(spec, sizeof(spec), "%s", optarg);
			break;
		case 't':
			threads = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'd':
			delay_us = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'S':
			if (!*optarg || strlen(optarg) >= sizeof(service)) {
				fprintf(stderr,
					"dagger-echo: --service: 1..%zu "
					"characters\n",
					sizeof(service) - 1);
				return 2;
			}
			snprintf(service, sizeof(service), "%s", optarg);
			break;
		case 'W':
			workers = (uint32_t)strtoul(optarg, NULL, 0);
			if (workers > 1024) {
				fprintf(stderr, "dagger-echo: --workers "
						"0..1024\n");
				return 2;
			}
			break;
		case 'w':
			wait_s = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'r':
			snprintf(remote, sizeof(remote), "%s", optarg);
			break;
		case 'n':
			n = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 's':
			size = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'l':
			lb = dg_lb_policy_parse(optarg);
			if (lb < 0) {
				fprintf(stderr,
					"dagger-echo: unknown --lb \"%s\" (rr, "
					"static, random or key)\n",
					optarg);
				return 2;
			}
			svc.lb = (uint8_t)lb;
			break;
		case 'm':
			ho.mode = dg_mode_parse(optarg);
			if (ho.mode < 0) {
				fprintf(stderr,
					"dagger-echo: unknown --mode \"%s\" "
					"(poll, doorbell or push)\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	colon = strrchr(remote, ':');
	if (colon) {
		*colon = 0;
		rport = (uint16_t)strtoul(colon + 1, NULL, 0);
	}
	if (dg_host_opts_engine(&ho, spec, addr, sizeof(addr)) || !n ||
	    size > DG_MAX_MSG || !threads || threads > DG_MAX_FLOWS) {
		usage(stderr);
		return 2;
	}
	ho.nflows = strcmp(argv[1], "server") ? 1 : threads;
	/* The engine may still be starting: retry within --wait. */
	{
		uint64_t until = now_ns() + wait_s * 1000000000ull;

		while ((rc = dg_host_attach(&ho, &h)) != 0 && now_ns() < until)
			usleep(200000);
	}
	if (rc) {
		fprintf(stderr, "dagger-echo: cannot attach to %s: %s\n", spec,
			strerror(-rc));
		return 1;
	}
	if (!strcmp(argv[1], "server")) {
		struct dg_server_opts so = {.nthreads = threads,
					    .workers = workers};
		struct dg_server *s;

		signal(SIGINT, on_sig);
		signal(SIGTERM, on_sig);
		svc.name = service;
		rc = dg_server_start_opts(h, &svc, &so, &s);
		if (rc) {
			fprintf(stderr, "dagger-echo: serve: %s\n",
				strerror(-rc));
			dg_host_detach(h);
			return 1;
		}
		printf("dagger-echo: serving \"%s\" with %u "
		       "thread(s)%s%.0u%s, "
		       "load balancing %s\n",
		       service, threads, workers ? " and " : "", workers,
		       workers ? " worker(s)" : "", dg_lb_policy_name(svc.lb));
		fflush(stdout);
		while (!stop)
			pause();
		dg_server_stop(s);
	} else {
		struct dg_flow *f = dg_host_flow(h, 0);
		uint64_t *lat = calloc(n, sizeof(*lat)), t0, t1;
		uint8_t *req = malloc(DG_MAX_MSG), *resp = malloc(DG_MAX_MSG);
		uint64_t until = now_ns() + wait_s * 1000000000ull;
		int conn;

		/* The server may still be starting: retry within --wait. */
		while ((conn = dg_connect(f, remote, rport, service, 10000)) ==
			       -ENOENT &&
		       now_ns() < until)
			usleep(100000);

		if (conn < 0 || !lat || !req || !resp) {
			fprintf(stderr, "dagger-echo: connect: %s\n",
				strerror(conn < 0 ? -conn : ENOMEM));
			dg_host_detach(h);
			return 1;
		}
		t0 = now_ns();
		for (i = 0; i < n; i++) {
			size_t rlen = DG_MAX_MSG;
			uint64_t a = now_ns();

			memset(req, (int)(i & 0xff), size);
			rc = dg_call_sync(f, conn, FN_ECHO, req, size, resp,
					  &rlen, 5000);
			lat[i] = now_ns() - a;
			if (rc || rlen != size || memcmp(req, resp, size))
				errors++;
		}
		t1 = now_ns();
		/*
		 * dg_call_sync drops answers to calls other than the one it
		 * waits for: a duplicated answer passes unseen there, but
		 * counts here. One completion per call, or an error.
		 */
		{
			struct dg_flow_stats st;

			dg_flow_stats(f, &st);
			if (st.completions != st.calls) {
				fprintf(stderr,
					"dagger-echo: %llu answers to %llu "
					"calls\n",
					(unsigned long long)st.completions,
					(unsigned long long)st.calls);
				errors++;
			}
		}
		qsort(lat, n, sizeof(*lat), cmp);
		printf("# echo over the NIC engine at %s, %u-byte "
		       "requests, synchronous\n"
		       "%8s %7s %9s %9s %9s %9s %10s\n"
		       "%8u %7u %9.2f %9.2f %9.2f %9.2f %10.0f\n",
		       dg_host_opts_str(&ho, where, sizeof(where)), size,
		       "rpcs", "errors", "p50_us", "p99_us", "p99.9_us",
		       "max_us", "rpcs/s", n, errors, lat[n / 2] / 1e3,
		       lat[(uint64_t)n * 99 / 100] / 1e3,
		       lat[(uint64_t)n * 999 / 1000] / 1e3, lat[n - 1] / 1e3,
		       n / ((t1 - t0) / 1e9));
		dg_close(f, conn);
		free(lat);
		free(req);
		free(resp);
		rc = errors ? 1 : 0;
	}
	dg_host_detach(h);
	return rc;
}
