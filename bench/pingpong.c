// SPDX-License-Identifier: MIT
/*
 * dagger-pingpong: the hardware's own limit for what the local backend
 * does, measured between two cores: 64-byte cache lines passed from one
 * core to the other and back, with no RPC stack at all.
 *
 * Two threads, pinned to --cpus A,B. The "client" writes W lines (a
 * sequence stamp in each) into a ring the "server" polls; the server
 * copies each line into a second ring the client polls. W = 1 is the
 * classic ping-pong (one line's round trip at a time); larger W keeps W
 * lines in flight, as dagger-bench --window does. Prints round trips per
 * second (Mrps) and the mean round trip.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"

#define RING 4096u /* lines per ring */

struct line {
	volatile uint64_t stamp; /* position + 1 once written */
	uint8_t data[56];
};
_Static_assert(sizeof(struct line) == 64, "one cache line");

static struct line req[RING] __attribute__((aligned(64)));
static struct line rsp[RING] __attribute__((aligned(64)));
static uint64_t total = 20000000;
static uint32_t window = 1;
static int cpu_a = 0, cpu_b = 1;

static void pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/*
 * The stamp is written last with release order and read first with
 * acquire order: the line's data is complete when its stamp says so.
 */
static void put(struct line *l, const struct line *src, uint64_t pos)
{
	memcpy(l->data, src->data, sizeof(l->data));
	__atomic_store_n(&l->stamp, pos + 1, __ATOMIC_RELEASE);
}

static bool ready(const struct line *l, uint64_t pos)
{
	return __atomic_load_n(&l->stamp, __ATOMIC_ACQUIRE) == pos + 1;
}

static void *server(void *arg)
{
	uint64_t pos;

	(void)arg;
	pin(cpu_b);
	for (pos = 0; pos < total; pos++) {
		while (!ready(&req[pos % RING], pos))
			;
		put(&rsp[pos % RING], &req[pos % RING], pos);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct line msg = {0};
	uint64_t sent = 0, done = 0, t0, t1;
	pthread_t thr;
	int o;

	while ((o = getopt(argc, argv, "n:w:c:h")) != -1) {
		switch (o) {
		case 'n':
			total = strtoull(optarg, NULL, 0);
			break;
		case 'w':
			window = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'c':
			if (sscanf(optarg, "%d,%d", &cpu_a, &cpu_b) != 2) {
				fprintf(stderr, "dagger-pingpong: -c A,B\n");
				return 2;
			}
			break;
		default:
			fprintf(stderr,
				"usage: dagger-pingpong [-n ROUNDTRIPS] [-w "
				"WINDOW] [-c CPU_A,CPU_B]\n");
			return o == 'h' ? 0 : 2;
		}
	}
	if (!total || !window || window > RING / 2) {
		fprintf(stderr, "dagger-pingpong: -n > 0, 1 <= -w <= %u\n",
			RING / 2);
		return 2;
	}
	pthread_create(&thr, NULL, server, NULL);
	pin(cpu_a);
	memset(msg.data, 0xab, sizeof(msg.data));
	t0 = bench_now_ns();
	while (done < total) {
		while (sent < total && sent - done < window) {
			put(&req[sent % RING], &msg, sent);
			sent++;
		}
		while (done < sent && ready(&rsp[done % RING], done))
			done++;
	}
	t1 = bench_now_ns();
	pthread_join(thr, NULL);
	printf("{\"bench\":\"pingpong\",\"window\":%u,\"cpus\":\"%d,%d\","
	       "\"roundtrips\":%llu,\"mrps\":%.3f,\"rtt_ns\":%.1f}\n",
	       window, cpu_a, cpu_b, (unsigned long long)total,
	       (double)total / ((double)(t1 - t0) / 1e9) / 1e6,
	       window == 1 ? (double)(t1 - t0) / (double)total : 0.0);
	return 0;
}
