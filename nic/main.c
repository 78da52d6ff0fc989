// SPDX-License-Identifier: MIT
/*
 * dagger-nic: the NIC engine as a program. Accepts host tenants over RDMA
 * (rdma_cm) on --listen ADDR:PORT and serves them until SIGINT/SIGTERM.
 * SIGUSR1 prints per-tenant, per-flow counters; they are printed at exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

static struct dg_nic *the_nic;
static volatile sig_atomic_t want_stats;

static void on_stop(int sig)
{
	(void)sig;
	if (the_nic)
		dg_nic_stop(the_nic);
}

static void on_usr1(int sig)
{
	(void)sig;
	want_stats = 1;
	/* The loop notices at its next stop check; see below. */
	if (the_nic)
		dg_nic_stop(the_nic);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dagger-nic --listen ADDR [--port PORT] [options]\n"
		"The NIC engine: serves host tenants that attach over RDMA.\n"
		"  -l, --listen ADDR   RDMA device address to accept on\n"
		"  -p, --port PORT     rdma_cm port (default 7471)\n"
		"  -b, --batch N       TX slots per RDMA READ (default 16)\n"
		"  -i, --id N          engine id (default 1)\n"
		"  -v, --verbose       log tenants and services\n"
		"Signals: SIGUSR1 prints counters; SIGINT/SIGTERM stop.\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"listen", required_argument, NULL, 'l'},
		{"port", required_argument, NULL, 'p'},
		{"batch", required_argument, NULL, 'b'},
		{"id", required_argument, NULL, 'i'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct dg_nic_opts o = {.port = 7471, .engine_id = 1};
	struct sigaction sa = {0};
	int c, rc;

	while ((c = getopt_long(argc, argv, "l:p:b:i:vh", lo, NULL)) != -1) {
		switch (c) {
		case 'l':
			o.listen_addr = optarg;
			break;
		case 'p':
			o.port = (uint16_t)strtoul(optarg, NULL, 0);
			break;
		case 'b':
			o.read_batch = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'i':
			o.engine_id = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'v':
			o.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!o.listen_addr) {
		usage(stderr);
		return 2;
	}
	rc = dg_nic_create(&o, &the_nic);
	if (rc) {
		fprintf(stderr, "dagger-nic: cannot listen on %s:%u: %s\n",
			o.listen_addr, o.port, strerror(-rc));
		return 1;
	}
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	fprintf(stderr, "dagger-nic: listening on %s:%u\n", o.listen_addr,
		dg_nic_port(the_nic));
	for (;;) {
		dg_nic_run(the_nic);
		if (!want_stats)
			break;
		want_stats = 0;
		dg_nic_stats_print(the_nic, stdout);
		fflush(stdout);
		dg_nic_resume(the_nic);
	}
	dg_nic_stats_print(the_nic, stdout);
	dg_nic_destroy(the_nic);
	return 0;
}
