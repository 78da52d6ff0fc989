// SPDX-License-Identifier: MIT
/*
 * dagger-local-tput: throughput of one client thread against an echo
 * server through an in-process NIC engine on the local (shared-memory)
 * backend: Dagger's loopback mode, the ceiling of the host side. Threads:
 * engine, one server dispatch thread, one client thread (pipelined, W
 * calls in flight). Prints Mrps and the client thread's cycles per RPC.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dagger/dagger.h"
#include "engine.h"

static int echo(void *arg, const struct dg_request *req,
		struct dg_response *resp)
{
	(void)arg;
	memcpy(resp->data, req->data, req->len);
	resp->len = req->len;
	return 0;
}

static void *engine_main(void *arg)
{
	dg_nic_run(arg);
	return NULL;
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int main(int argc, char **argv)
{
	static const struct dg_handler hs[] = {{1, echo}};
	static const struct dg_service_def svc = {
		.name = "echo", .handlers = hs, .nhandlers = 1};
	uint32_t n = 2000000, window = 64, size = 64, done = 0, sent = 0;
	struct dg_host_opts ho = {.attach_local = dg_nic_attach_cb,
				  .detach_local = dg_nic_detach_cb,
				  .nflows = 1,
				  .slots = 4096};
	struct dg_completion c[64];
	struct dg_host *srv, *cli;
	struct dg_server *s;
	struct dg_nic *nic;
	struct dg_flow *f;
	pthread_t et;
	uint8_t buf[DG_MAX_INLINE];
	double t0, t1;
	uint32_t errors = 0, id;
	int conn, o, json = 0, yield = 0;

	while ((o = getopt(argc, argv, "n:w:s:jyh")) != -1) {
		switch (o) {
		case 'n':
			n = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'w':
			window = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 's':
			size = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'j':
			json = 1;
			break;
		case 'y':
			yield = 1;
			break;
		default:
			fprintf(stderr,
				"usage: dagger-local-tput [-n RPCS] [-w "
				"WINDOW] "
				"[-s SIZE] [-j] [-y]\n"
				"-y: yield the core while no completion is "
				"ready (fewer cores than threads)\n");
			return o == 'h' ? 0 : 2;
		}
	}
	if (!n || !window || size > DG_MAX_INLINE) {
		fprintf(stderr, "dagger-local-tput: bad arguments\n");
		return 2;
	}
	if (dg_nic_create(NULL, &nic))
		return 1;
	pthread_create(&et, NULL, engine_main, nic);
	ho.local_arg = nic;
	if (dg_host_attach(&ho, &srv) || dg_host_attach(&ho, &cli)) {
		fprintf(stderr, "dagger-local-tput: attach failed\n");
		return 1;
	}
	if (dg_server_start(srv, &svc, 0, 1, &s)) {
		fprintf(stderr, "dagger-local-tput: server failed\n");
		return 1;
	}
	f = dg_host_flow(cli, 0);
	conn = dg_connect(f, NULL, 0, "echo", 5000);
	if (conn < 0) {
		fprintf(stderr, "dagger-local-tput: connect: %s\n",
			strerror(-conn));
		return 1;
	}
	memset(buf, 0xab, size);
	pin(-1);
	t0 = now_s();
	while (done < n) {
		int k, i;

		while (sent < n && sent - done < window &&
		       dg_call(f, conn, 1, buf, size, &id) == 0)
			sent++;
		k = dg_poll(f, c, 64);
		if (!k && yield)
			sched_yield(); /* fewer cores than pollers */
		for (i = 0; i < k; i++)
			errors += c[i].status != 0 || c[i].len != size;
		done += (uint32_t)k;
	}
	t1 = now_s();
	if (json)
		printf("{\"bench\":\"local-tput\",\"size\":%u,\"window\":%u,"
		       "\"rpcs\":%u,\"errors\":%u,\"mrps\":%.3f}\n",
		       size, window, n, errors, n / (t1 - t0) / 1e6);
	else
		printf("# one client thread, local backend, NIC loopback\n"
		       "%6s %6s %10s %7s %8s\n%6u %6u %10u %7u %8.3f\n",
		       "bytes", "window", "rpcs", "errors", "Mrps", size,
		       window, n, errors, n / (t1 - t0) / 1e6);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
	dg_nic_stop(nic);
	pthread_join(et, NULL);
	dg_nic_destroy(nic);
	return errors ? 1 : 0;
}
