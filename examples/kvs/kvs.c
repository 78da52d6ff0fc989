// SPDX-License-Identifier: MIT
/*
 * dagger-kvs: a key-value store served over a NIC engine, with the typed
 * stubs dagger-idlc generates from kvs.proto.
 *
 *   dagger-kvs server --engine ENGINE [--threads N] [--workers N]
 *   dagger-kvs client --engine ENGINE [--remote ADDR[:PORT]]
 *                     [--wait S] [-c COMMAND]...
 *   dagger-kvs local [--threads N] [-c COMMAND]...
 *
 * local runs an engine, the server and the client in one process (the
 * shared-memory backend): the stubs' cost without a network. *
 * The server keeps an in-memory hash table (striped locks: its dispatch
 * threads share it). Its service also answers a raw echo on function id
 * 0 (which dagger-idlc never assigns), on the same flows and threads, so
 * a client can compare the typed stubs with the bare RPC in one run.
 *
 * Client commands, from -c (non-interactive) or stdin (a shell, with a
 * prompt on a terminal):
 *   get KEY | set KEY VALUE | del KEY | mget KEY... | populate N [VSIZE]
 *   bench [N] | help | quit
 * populate writes keys "key-%012u" (16 bytes) with VSIZE-byte values
 * (default 32); bench times N synchronous Gets of those keys and N raw
 * echoes of the Get response's size, interleaved, and prints p50/p99.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "kvs.dg.h"

#define KVS_ST_NOMEM (DG_ST_APP_BASE + 1) /* server arena exhausted */
#define ECHO_FN	     0			  /* raw echo: no generated id is 0 */
#define NLOCKS	     64

static volatile sig_atomic_t stop;

static void on_sig(int s)
{
	(void)s;
	stop = 1;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* ---- the table ----------------------------------------------------------- */

struct entry {
	struct entry *next;
	uint32_t hash, klen, vlen;
	uint8_t data[]; /* key, then value */
};

struct table {
	struct entry **b;
	uint32_t mask;
	pthread_mutex_t lock[NLOCKS];
};

static uint32_t hash(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--) {
		h ^= *p++;
		h *= 16777619u;
	}
	return h;
}

static int table_init(struct table *t, uint32_t buckets)
{
	uint32_t i;

	t->b = calloc(buckets, sizeof(*t->b));
	t->mask = buckets - 1;
	for (i = 0; i < NLOCKS; i++)
		pthread_mutex_init(&t->lock[i], NULL);
	return t->b ? 0 : -ENOMEM;
}

static void table_free(struct table *t)
{
	uint32_t i;

	for (i = 0; i <= t->mask; i++) {
		struct entry *e = t->b[i], *n;

		for (; e; e = n) {
			n = e->next;
			free(e);
		}
	}
	free(t->b);
}

/* The link that points at key's entry (or at NULL); bucket lock held. */
static struct entry **find(struct table *t, uint32_t h, const uint8_t *k,
			   size_t klen)
{
	struct entry **pp = &t->b[h & t->mask];

	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && (*pp)->klen == klen &&
		    !memcmp((*pp)->data, k, klen))
			break;
	return pp;
}

static pthread_mutex_t *lock_of(struct table *t, uint32_t h)
{
	return &t->lock[(h & t->mask) % NLOCKS];
}

/* Copies key's value into the serving flow's arena: *found, *out. */
static int lookup(struct table *t, struct dg_flow *f, ProtobufCBinaryData key,
		  protobuf_c_boolean *found, ProtobufCBinaryData *out)
{
	uint32_t h = hash(key.data, key.len);
	pthread_mutex_t *l = lock_of(t, h);
	struct entry *e;
	int rc = 0;

	pthread_mutex_lock(l);
	e = *find(t, h, key.data, key.len);
	*found = e != NULL;
	out->len = 0;
	out->data = NULL;
	if (e) {
		/* A copy: the entry may go before the response is encoded. */
		out->data = dg_flow_alloc(f, e->vlen ? e->vlen : 1);
		if (out->data) {
			memcpy(out->data, e->data + e->klen, e->vlen);
			out->len = e->vlen;
		} else {
			rc = KVS_ST_NOMEM;
		}
	}
	pthread_mutex_unlock(l);
	return rc;
}

static int h_get(void *arg, struct dg_flow *f, const Kvs__GetRequest *req,
		 Kvs__GetResponse *resp)
{
	return lookup(arg, f, req->key, &resp->found, &resp->value);
}

static int h_set(void *arg, struct dg_flow *f, const Kvs__SetRequest *req,
		 Kvs__SetResponse *resp)
{
	struct table *t = arg;
	uint32_t h = hash(req->key.data, req->key.len);
	struct entry *e = malloc(sizeof(*e) + req->key.len + req->value.len),
		     **pp, *old;

	(void)f;
	if (!e)
		return KVS_ST_NOMEM;
	e->hash = h;
	e->klen = (uint32_t)req->key.len;
	e->vlen = (uint32_t)req->value.len;
	if (req->key.len)
		memcpy(e->data, req->key.data, req->key.len);
	if (req->value.len)
		memcpy(e->data + e->klen, req->value.data, req->value.len);
	pthread_mutex_lock(lock_of(t, h));
	pp = find(t, h, req->key.data, req->key.len);
	old = *pp;
	e->next = old ? old->next : NULL;
	*pp = e;
	pthread_mutex_unlock(lock_of(t, h));
	resp->replaced = old != NULL;
	free(old);
	return 0;
}

static int h_del(void *arg, struct dg_flow *f, const Kvs__DeleteRequest *req,
		 Kvs__DeleteResponse *resp)
{
	struct table *t = arg;
	uint32_t h = hash(req->key.data, req->key.len);
	struct entry **pp, *old;

	(void)f;
	pthread_mutex_lock(lock_of(t, h));
	pp = find(t, h, req->key.data, req->key.len);
	old = *pp;
	if (old)
		*pp = old->next;
	pthread_mutex_unlock(lock_of(t, h));
	resp->found = old != NULL;
	free(old);
	return 0;
}

static int h_mget(void *arg, struct dg_flow *f, const Kvs__MultiGetRequest *req,
		  Kvs__MultiGetResponse *resp)
{
	Kvs__GetResponse *v;
	size_t i;
	int rc;

	resp->values = dg_flow_alloc(f, req->n_keys * sizeof(*resp->values));
	v = dg_flow_alloc(f, req->n_keys * sizeof(*v));
	if (req->n_keys && (!resp->values || !v))
		return KVS_ST_NOMEM;
	for (i = 0; i < req->n_keys; i++) {
		kvs__get_response__init(&v[i]);
		rc = lookup(arg, f, req->keys[i], &v[i].found, &v[i].value);
		if (rc)
			return rc;
		resp->values[i] = &v[i];
	}
	resp->n_values = req->n_keys;
	return 0;
}

static int raw_echo(void *arg, const struct dg_request *req,
		    struct dg_response *resp)
{
	(void)arg;
	memcpy(resp->data, req->data, req->len);
	resp->len = req->len;
	return 0;
}

struct kvs_server {
	struct kvs__kvs__server srv;
	struct dg_handler table[8];
	struct dg_service_def def;
	struct table t;
	struct dg_server *s;
};

/* The generated table, and the raw echo next to it, on threads flows. */
static int server_start(struct dg_host *h, uint32_t threads, uint32_t workers,
			uint8_t lb, struct kvs_server *k)
{
	static const struct kvs__kvs__handlers hs = {.get = h_get,
						     .set = h_set,
						     .delete = h_del,
						     .multi_get = h_mget};
	int rc;

	if (table_init(&k->t, 1u << 16))
		return -ENOMEM;
	k->def = *kvs__kvs__service(&k->srv, &hs, &k->t, lb);
	memcpy(k->table, k->def.handlers, k->def.nhandlers * sizeof(*k->table));
	k->table[k->def.nhandlers++] = (struct dg_handler){ECHO_FN, raw_echo};
	k->def.handlers = k->table;
	rc = dg_server_start_opts(h, &k->def,
				  &(struct dg_server_opts){.nthreads = threads,
							   .workers = workers},
				  &k->s);
	if (rc)
		table_free(&k->t);
	return rc;
}

static void server_stop(struct kvs_server *k)
{
	dg_server_stop(k->s);
	table_free(&k->t);
}

static int run_server(struct dg_host *h, uint32_t threads, uint32_t workers,
		      uint8_t lb)
{
	static struct kvs_server k;
	int rc;

	signal(SIGINT, on_sig);
	signal(SIGTERM, on_sig);
	rc = server_start(h, threads, workers, lb, &k);
	if (rc) {
		fprintf(stderr, "dagger-kvs: serve: %s\n", strerror(-rc));
		return 1;
	}
	printf("dagger-kvs: serving \"%s\" (and a raw echo) with %u "
	       "thread(s)%s%.0u%s, load balancing %s\n",
	       KVS__KVS__SERVICE, threads, workers ? " and " : "", workers,
	       workers ? " worker(s)" : "", dg_lb_policy_name(lb));
	fflush(stdout);
	while (!stop)
		usleep(100000); /* any thread may take the signal */
	server_stop(&k);
	return 0;
}

/* ---- client -------------------------------------------------------------- */

struct client {
	struct dg_flow *f;
	int conn;
	uint32_t populated, vsize;
	int errors;
};

static void print_bytes(const uint8_t *p, size_t n)
{
	size_t i;

	putchar('"');
	for (i = 0; i < n; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
			putchar(p[i]);
		else
			printf("\\x%02x", p[i]);
	}
	putchar('"');
}

static ProtobufCBinaryData bin(const char *s)
{
	return (ProtobufCBinaryData){.len = strlen(s), .data = (uint8_t *)s};
}

static void report(struct client *c, const char *what, int rc)
{
	c->errors++;
	printf("error: %s: %s\n", what,
	       rc < 0 ? strerror(-rc) : dg_status_str(rc));
}

static void key_of(char *k, uint32_t i)
{
	snprintf(k, 17, "key-%012u", i);
}

static void value_of(uint8_t *v, uint32_t i, uint32_t size)
{
	uint32_t j;

	for (j = 0; j < size; j++)
		v[j] = (uint8_t)('a' + (i + j) % 26);
}

static int cmp64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void populate(struct client *c, uint32_t n, uint32_t vsize)
{
	uint8_t *v = malloc(vsize ? vsize : 1);
	Kvs__SetRequest rq = KVS__SET_REQUEST__INIT;
	Kvs__SetResponse *rs;
	char k[17];
	uint32_t i;
	int rc;

	if (!v)
		return;
	for (i = 0; i < n; i++) {
		key_of(k, i);
		value_of(v, i, vsize);
		rq.key = bin(k);
		rq.value = (ProtobufCBinaryData){.len = vsize, .data = v};
		rc = kvs__kvs__set_sync(c->f, c->conn, &rq, &rs, 5000);
		if (rc) {
			report(c, "populate", rc);
			break;
		}
	}
	free(v);
	c->populated = i;
	c->vsize = vsize;
	printf("populated %u keys (16-byte keys, %u-byte values)\n", i, vsize);
}

/*
 * Typed Get against raw echo of the Get response's encoded size, in
 * alternating blocks so both see the same conditions.
 */
static void bench(struct client *c, uint32_t n)
{
	uint64_t *tg = calloc(n ? n : 1, sizeof(*tg)),
		 *te = calloc(n ? n : 1, sizeof(*te));
	Kvs__GetRequest rq = KVS__GET_REQUEST__INIT;
	Kvs__GetResponse *rs, probe = KVS__GET_RESPONSE__INIT;
	uint8_t want[DG_FRAME_PAYLOAD * 64], echo[DG_MAX_INLINE],
		back[DG_MAX_INLINE];
	uint32_t i = 0, j = 0, bad_g = 0, bad_e = 0, esize, seed = 12345;
	char k[17];
	int rc;

	if (!tg || !te || !n)
		goto out;
	if (!c->populated)
		populate(c, 1000, 32);
	if (!c->populated || c->vsize > sizeof(want))
		goto out;
	probe.found = 1;
	probe.value = (ProtobufCBinaryData){.len = c->vsize, .data = want};
	esize = (uint32_t)kvs__get_response__get_packed_size(&probe);
	memset(echo, 0x5a, esize);
	while (i < n || j < n) {
		uint32_t blk;

		for (blk = 0; blk < 100 && i < n; blk++, i++) {
			uint32_t key = (seed = seed * 1664525u + 1013904223u) %
				       c->populated;
			uint64_t t0;

			key_of(k, key);
			value_of(want, key, c->vsize);
			rq.key = bin(k);
			t0 = now_ns();
			rc = kvs__kvs__get_sync(c->f, c->conn, &rq, &rs, 5000);
			tg[i] = now_ns() - t0;
			if (rc || !rs->found || rs->value.len != c->vsize ||
			    memcmp(rs->value.data, want, c->vsize))
				bad_g++;
		}
		for (blk = 0; blk < 100 && j < n; blk++, j++) {
			size_t blen = sizeof(back);
			uint64_t t0 = now_ns();

			rc = dg_call_sync(c->f, c->conn, ECHO_FN, echo, esize,
					  back, &blen, 5000);
			te[j] = now_ns() - t0;
			if (rc || blen != esize || memcmp(back, echo, esize))
				bad_e++;
		}
	}
	qsort(tg, n, sizeof(*tg), cmp64);
	qsort(te, n, sizeof(*te), cmp64);
	printf("# kvs Get (16-byte key, %u-byte value; %zu B request, %u B "
	       "response) vs raw echo of %u B (same service and thread), "
	       "synchronous, interleaved\n"
	       "%-10s %8s %7s %9s %9s %9s\n",
	       c->vsize, kvs__get_request__get_packed_size(&rq), esize, esize,
	       "kind", "rpcs", "errors", "p50_us", "p99_us", "p99.9_us");
	printf("%-10s %8u %7u %9.2f %9.2f %9.2f\n", "typed_get", n, bad_g,
	       tg[n / 2] / 1e3, tg[(uint64_t)n * 99 / 100] / 1e3,
	       tg[(uint64_t)n * 999 / 1000] / 1e3);
	printf("%-10s %8u %7u %9.2f %9.2f %9.2f\n", "raw_echo", n, bad_e,
	       te[n / 2] / 1e3, te[(uint64_t)n * 99 / 100] / 1e3,
	       te[(uint64_t)n * 999 / 1000] / 1e3);
	printf("overhead_p50 %+.1f%%  overhead_p99 %+.1f%%\n",
	       100.0 * ((double)tg[n / 2] - (double)te[n / 2]) /
		       (double)te[n / 2],
	       100.0 *
		       ((double)tg[(uint64_t)n * 99 / 100] -
			(double)te[(uint64_t)n * 99 / 100]) /
		       (double)te[(uint64_t)n * 99 / 100]);
	if (bad_g || bad_e)
		c->errors++;
out:
	free(tg);
	free(te);
}

static void help(void)
{
	printf("commands: get KEY | set KEY VALUE | del KEY | mget KEY... |\n"
	       "          populate N [VSIZE] | bench [N] | help | quit\n");
}

/* Runs one command line; 1 to quit. */
static int command(struct client *c, char *line)
{
	char *av[64], *save = NULL, *w;
	int ac = 0, rc;

	for (w = strtok_r(line, " \t\r\n", &save); w && ac < 64;
	     w = strtok_r(NULL, " \t\r\n", &save))
		av[ac++] = w;
	if (!ac)
		return 0;
	if (!strcmp(av[0], "quit") || !strcmp(av[0], "exit"))
		return 1;
	if (!strcmp(av[0], "get") && ac == 2) {
		Kvs__GetRequest rq = KVS__GET_REQUEST__INIT;
		Kvs__GetResponse *rs;

		rq.key = bin(av[1]);
		rc = kvs__kvs__get_sync(c->f, c->conn, &rq, &rs, 5000);
		if (rc)
			report(c, "get", rc);
		else if (!rs->found)
			printf("(not found)\n");
		else
			print_bytes(rs->value.data, rs->value.len),
				putchar('\n');
	} else if (!strcmp(av[0], "set") && ac == 3) {
		Kvs__SetRequest rq = KVS__SET_REQUEST__INIT;
		Kvs__SetResponse *rs;

		rq.key = bin(av[1]);
		rq.value = bin(av[2]);
		rc = kvs__kvs__set_sync(c->f, c->conn, &rq, &rs, 5000);
		if (rc)
			report(c, "set", rc);
		else
			printf(rs->replaced ? "OK (replaced)\n" : "OK\n");
	} else if (!strcmp(av[0], "del") && ac == 2) {
		Kvs__DeleteRequest rq = KVS__DELETE_REQUEST__INIT;
		Kvs__DeleteResponse *rs;

		rq.key = bin(av[1]);
		rc = kvs__kvs__delete_sync(c->f, c->conn, &rq, &rs, 5000);
		if (rc)
			report(c, "del", rc);
		else
			printf(rs->found ? "deleted\n" : "(not found)\n");
	} else if (!strcmp(av[0], "mget") && ac >= 2) {
		Kvs__MultiGetRequest rq = KVS__MULTI_GET_REQUEST__INIT;
		Kvs__MultiGetResponse *rs;
		ProtobufCBinaryData keys[63];
		int i;

		for (i = 1; i < ac; i++)
			keys[i - 1] = bin(av[i]);
		rq.n_keys = (size_t)ac - 1;
		rq.keys = keys;
		rc = kvs__kvs__multi_get_sync(c->f, c->conn, &rq, &rs, 5000);
		if (rc) {
			report(c, "mget", rc);
		} else if (rs->n_values != rq.n_keys) {
			report(c, "mget", -EPROTO);
		} else {
			for (i = 0; i < (int)rs->n_values; i++) {
				printf("%s: ", av[i + 1]);
				if (rs->values[i]->found)
					print_bytes(rs->values[i]->value.data,
						    rs->values[i]->value.len);
				else
					printf("(not found)");
				putchar('\n');
			}
		}
	} else if (!strcmp(av[0], "populate") && (ac == 2 || ac == 3)) {
		uint32_t vs = ac == 3 ? (uint32_t)strtoul(av[2], NULL, 0) : 32;

		if (vs > DG_MAX_MSG - 64)
			printf("error: value size too large\n"), c->errors++;
		else
			populate(c, (uint32_t)strtoul(av[1], NULL, 0), vs);
	} else if (!strcmp(av[0], "bench") && ac <= 2) {
		bench(c, ac == 2 ? (uint32_t)strtoul(av[1], NULL, 0) : 10000);
	} else if (!strcmp(av[0], "help")) {
		help();
	} else {
		printf("error: bad command \"%s\" (try help)\n", av[0]);
		c->errors++;
	}
	fflush(stdout);
	return 0;
}

static int run_client(struct dg_host *h, const char *remote, uint16_t rport,
		      uint32_t wait_s, char **cmds, int ncmd)
{
	struct client c = {.f = dg_host_flow(h, 0)};
	uint64_t until = now_ns() + wait_s * 1000000000ull;
	char line[4096];
	int i, tty = isatty(0);

	while ((c.conn = dg_connect(c.f, remote, rport, KVS__KVS__SERVICE,
				    10000)) == -ENOENT &&
	       now_ns() < until)
		usleep(100000);
	if (c.conn < 0) {
		fprintf(stderr, "dagger-kvs: connect: %s\n", strerror(-c.conn));
		return 1;
	}
	if (ncmd) {
		for (i = 0; i < ncmd; i++) {
			snprintf(line, sizeof(line), "%s", cmds[i]);
			if (command(&c, line))
				break;
		}
	} else {
		for (;;) {
			if (tty) {
				printf("kvs> ");
				fflush(stdout);
			}
			if (!fgets(line, sizeof(line), stdin) ||
			    command(&c, line))
				break;
		}
	}
	dg_close(c.f, c.conn);
	return c.errors ? 1 : 0;
}

/*
 * Server and client in this process, on an in-process engine (the local,
 * shared-memory backend): the stubs' own cost, without a network.
 */
static void *engine_main(void *arg)
{
	dg_nic_run(arg);
	return NULL;
}

static int run_local(uint32_t threads, char **cmds, int ncmd)
{
	static struct kvs_server k;
	struct dg_host_opts o = {.attach_local = dg_nic_attach_cb,
				 .detach_local = dg_nic_detach_cb};
	struct dg_host *srv = NULL, *cli = NULL;
	struct dg_nic *nic;
	pthread_t thr;
	int rc;

	rc = dg_nic_create(NULL, &nic);
	if (rc || pthread_create(&thr, NULL, engine_main, nic)) {
		fprintf(stderr, "dagger-kvs: engine: %s\n",
			strerror(rc ? -rc : EAGAIN));
		return 1;
	}
	o.local_arg = nic;
	o.nflows = threads;
	rc = dg_host_attach(&o, &srv);
	if (!rc) {
		o.nflows = 1;
		rc = dg_host_attach(&o, &cli);
	}
	if (!rc)
		rc = server_start(srv, threads, 0, DG_LB_ROUND_ROBIN, &k);
	if (rc) {
		fprintf(stderr, "dagger-kvs: local: %s\n", strerror(-rc));
		rc = 1;
	} else {
		rc = run_client(cli, NULL, 0, 0, cmds, ncmd);
		server_stop(&k);
	}
	dg_host_detach(cli);
	dg_host_detach(srv);
	dg_nic_stop(nic);
	pthread_join(thr, NULL);
	dg_nic_destroy(nic);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: dagger-kvs server --engine ENGINE "
		   "[--threads N] [--lb rr|static|random|key]\n"
		   "                         [--workers N]\n"
		   "       dagger-kvs client --engine ENGINE "
		   "[--remote ADDR[:PORT]] [--wait S] [-c COMMAND]...\n"
		   "       dagger-kvs local [--threads N] [-c COMMAND]...\n"
		   "--remote names the engine the server is behind, when it "
		   "is not the\nclient's own; --wait retries the connection "
		   "for S seconds while the\nservice is not registered. "
		   "Without -c, commands are read from stdin.\n"
		   "ENGINE is ADDR[:PORT] (RDMA) or unix:PATH (an engine "
		   "daemon on this\nmachine: dagger-nic --shm PATH). "
		   "--mode poll|doorbell|push: how the\nengine learns of "
		   "new frames (RDMA; default doorbell).\n");
	fprintf(f, "client ");
	help();
}

static void split_port(char *addr, uint16_t *port)
{
	char *colon = strrchr(addr, ':');

	if (colon) {
		*colon = 0;
		*port = (uint16_t)strtoul(colon + 1, NULL, 0);
	}
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"engine", required_argument, NULL, 'e'},
		{"threads", required_argument, NULL, 't'},
		{"remote", required_argument, NULL, 'r'},
		{"wait", required_argument, NULL, 'w'},
		{"lb", required_argument, NULL, 'l'},
		{"mode", required_argument, NULL, 'm'},
		{"workers", required_argument, NULL, 'W'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct dg_host_opts ho = {.engine_port = 7471};
	char addr[64] = "", remote[64] = "", spec[160] = "", **cmds;
	uint32_t threads = 1, wait_s = 0, workers = 0;
	int lb = DG_LB_ROUND_ROBIN;
	bool server;
	uint16_t rport = 0;
	int c, rc, ncmd = 0;
	struct dg_host *h;

	if (argc < 2 ||
	    (strcmp(argv[1], "server") && strcmp(argv[1], "client") &&
	     strcmp(argv[1], "local"))) {
		usage(stderr);
		return 2;
	}
	server = !strcmp(argv[1], "server");
	setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows up in logs */
	cmds = calloc((size_t)argc, sizeof(*cmds));
	if (!cmds)
		return 1;
	optind = 2;
	while ((c = getopt_long(argc, argv, "e:t:r:w:c:l:m:h", lo, NULL)) !=
	       -1) {
		switch (c) {
		case 'e':
			snprintf(spec, sizeof(spec), "%s", optarg);
			break;
		case 't':
			threads = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'r':
			snprintf(remote, sizeof(remote), "%s", optarg);
			break;
		case 'w':
			wait_s = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'c':
			cmds[ncmd++] = optarg;
			break;
		case 'W':
			workers = (uint32_t)strtoul(optarg, NULL, 0);
			if (workers > 1024) {
				fprintf(stderr,
					"dagger-kvs: --workers 0..1024\n");
				return 2;
			}
			break;
		case 'l':
			lb = dg_lb_policy_parse(optarg);
			if (lb < 0) {
				fprintf(stderr,
					"dagger-kvs: unknown --lb \"%s\" (rr, "
					"static, random or key)\n",
					optarg);
				free(cmds);
				return 2;
			}
			break;
		case 'm':
			ho.mode = dg_mode_parse(optarg);
			if (ho.mode < 0) {
				fprintf(stderr,
					"dagger-kvs: unknown --mode \"%s\" "
					"(poll, "
					"doorbell or push)\n",
					optarg);
				free(cmds);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			free(cmds);
			return 0;
		default:
			usage(stderr);
			free(cmds);
			return 2;
		}
	}
	if (!strcmp(argv[1], "local")) {
		rc = optind != argc || !threads || threads > DG_MAX_FLOWS
			     ? (usage(stderr), 2)
			     : run_local(threads, cmds, ncmd);
		free(cmds);
		return rc;
	}
	split_port(remote, &rport);
	if (dg_host_opts_engine(&ho, spec, addr, sizeof(addr)) ||
	    optind != argc || !threads || threads > DG_MAX_FLOWS) {
		usage(stderr);
		free(cmds);
		return 2;
	}
	ho.nflows = server ? threads : 1;
	rc = dg_host_attach(&ho, &h);
	if (rc) {
		fprintf(stderr, "dagger-kvs: cannot attach to %s: %s\n", spec,
			strerror(-rc));
		free(cmds);
		return 1;
	}
	rc = server ? run_server(h, threads, workers, (uint8_t)lb)
		    : run_client(h, remote, rport, wait_s, cmds, ncmd);
	dg_host_detach(h);
	free(cmds);
	return rc;
}
