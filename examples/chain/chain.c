// SPDX-License-Identifier: MIT
/*
 * dagger-chain: a three-tier check-in application in miniature (after
 * Dagger's flight check-in microservices). Each tier is its own process
 * and its own tenant of a NIC engine:
 *
 *   client -> frontend -> logic -> storage
 *                  \________________/
 *
 *   dagger-chain storage  --engine E [--threads N]
 *   dagger-chain logic    --engine E [--storage ADDR:PORT] [--threads N]
 *   dagger-chain frontend --engine E [--logic ADDR:PORT]
 *                         [--storage ADDR:PORT] [--threads N]
 *   dagger-chain client   --engine E [--frontend ADDR:PORT] [-n N]
 *                         [--prefix NAME]
 *
 * --logic/--storage/--frontend name the engine a tier is behind when it
 * is not the caller's own engine. A check-in at the frontend fans out:
 * Storage.Get (already checked in?) and Logic.Validate (which takes a
 * seat with Storage.Add) in parallel, then Storage.Put (the boarding
 * pass) and Storage.Add (miles). The client checks in passengers
 * NAME-0..N-1 (default "passenger"), then the first tenth again (they get
 * the same booking), checks every answer and prints latency; any wrong
 * answer makes it exit 1.
 *
 * A middle tier's dispatch thread owns two flows: a server flow for its
 * callers and a client flow for its downstream calls, which its handlers
 * make while the request waits (a serving flow does not take responses).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chain.dg.h"

#define SEATS	      300 /* per flight */
#define FLIGHTS	      16  /* the client spreads passengers over these */
#define MAX_BAGS      3
#define CALL_TIMEOUT  5000
#define ST_DOWNSTREAM (DG_ST_APP_BASE + 1) /* a lower tier failed */
#define ST_NOMEM      (DG_ST_APP_BASE + 2)

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

struct peer {
	char addr[64]; /* "" = the caller's own engine */
	uint16_t port;
};

static void parse_peer(const char *s, struct peer *p)
{
	char *colon;

	snprintf(p->addr, sizeof(p->addr), "%s", s);
	colon = strrchr(p->addr, ':');
	if (colon) {
		*colon = 0;
		p->port = (uint16_t)strtoul(colon + 1, NULL, 0);
	}
}

/* Connects, retrying while the service is not registered yet. */
static int connect_wait(struct dg_flow *f, const struct peer *p,
			const char *svc)
{
	uint64_t until = now_ns() + 120ull * 1000000000ull;
	int c;

	while ((c = dg_connect(f, p->addr, p->port, svc, 10000)) == -ENOENT &&
	       now_ns() < until)
		usleep(100000);
	if (c < 0)
		fprintf(stderr, "dagger-chain: connect %s: %s\n", svc,
			strerror(-c));
	return c;
}

/* A copy of n bytes (plus a NUL) in the serving flow's arena. */
static char *arena_str(struct dg_flow *f, const void *p, size_t n)
{
	char *s = dg_flow_alloc(f, n + 1);

	if (s) {
		memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

/* ---- storage ------------------------------------------------------------- */

struct item {
	struct item *next;
	char *key;
	uint8_t *val;
	size_t len;
	uint64_t version;
};

struct store {
	pthread_mutex_t lock;
	struct item *b[4096];
	uint64_t version;
};

static struct item *store_find(struct store *s, const char *key, bool make)
{
	uint32_t h = 2166136261u;
	const char *p;
	struct item *it;

	for (p = key; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	for (it = s->b[h % 4096]; it; it = it->next)
		if (!strcmp(it->key, key))
			return it;
	if (!make)
		return NULL;
	it = calloc(1, sizeof(*it));
	if (!it || !(it->key = strdup(key))) {
		free(it);
		return NULL;
	}
	it->next = s->b[h % 4096];
	s->b[h % 4096] = it;
	return it;
}

static int st_get(void *arg, struct dg_flow *f, const Chain__GetRequest *req,
		  Chain__GetReply *resp)
{
	struct store *s = arg;
	struct item *it;
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	it = store_find(s, req->key, false);
	if (it) {
		resp->found = 1;
		resp->version = it->version;
		resp->value.len = it->len;
		resp->value.data = (uint8_t *)arena_str(f, it->val, it->len);
		rc = resp->value.data ? 0 : ST_NOMEM;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int st_put(void *arg, struct dg_flow *f, const Chain__PutRequest *req,
		  Chain__PutReply *resp)
{
	struct store *s = arg;
	uint8_t *v = malloc(req->value.len ? req->value.len : 1);
	struct item *it;

	(void)f;
	if (!v)
		return ST_NOMEM;
	memcpy(v, req->value.data, req->value.len);
	pthread_mutex_lock(&s->lock);
	it = store_find(s, req->key, true);
	if (it) {
		free(it->val);
		it->val = v;
		it->len = req->value.len;
		it->version = ++s->version;
		resp->version = it->version;
	}
	pthread_mutex_unlock(&s->lock);
	if (!it)
		free(v);
	return it ? 0 : ST_NOMEM;
}

/* A counter kept as a decimal string. */
static int st_add(void *arg, struct dg_flow *f, const Chain__AddRequest *req,
		  Chain__AddReply *resp)
{
	struct store *s = arg;
	char buf[32];
	struct item *it;
	int64_t v = 0;
	int n;

	(void)f;
	pthread_mutex_lock(&s->lock);
	it = store_find(s, req->key, true);
	if (it && it->len && it->len < sizeof(buf)) {
		memcpy(buf, it->val, it->len);
		buf[it->len] = 0;
		v = strtoll(buf, NULL, 10);
	}
	v += req->delta;
	n = snprintf(buf, sizeof(buf), "%" PRId64, v);
	if (it) {
		uint8_t *nv = malloc((size_t)n);

		if (nv) {
			memcpy(nv, buf, (size_t)n);
			free(it->val);
			it->val = nv;
			it->len = (size_t)n;
			it->version = ++s->version;
		} else {
			it = NULL;
		}
	}
	pthread_mutex_unlock(&s->lock);
	resp->value = v;
	return it ? 0 : ST_NOMEM;
}

static void store_free(struct store *s)
{
	size_t i;

	for (i = 0; i < 4096; i++) {
		struct item *it = s->b[i], *n;

		for (; it; it = n) {
			n = it->next;
			free(it->key);
			free(it->val);
			free(it);
		}
	}
}

/* ---- middle tiers: a server flow and a client flow per thread ------------ */

struct tier;

struct worker {
	struct tier *t;
	uint32_t idx;
	pthread_t thr;
	struct dg_flow *sf, *cf; /* serving, calling */
	int logic, storage;	 /* connections on cf */
	union {
		struct chain__frontend__server fe;
		struct chain__logic__server lg;
	} srv;
	int rc;
};

struct tier {
	struct dg_host *h;
	bool frontend;
	struct peer logic, storage;
	struct worker w[DG_MAX_FLOWS / 2];
	uint32_t n;
	int ready; /* atomic */
};

/* A lower tier failed: say which call and why, answer ST_DOWNSTREAM. */
static int downstream(const char *what, int rc)
{
	fprintf(stderr, "dagger-chain: %s: %s\n", what,
		rc < 0 ? strerror(-rc) : dg_status_str(rc));
	return ST_DOWNSTREAM;
}

/*
 * Logic: refuses too many bags; otherwise takes the flight's next seat
 * with Storage.Add and names it (row, letter); a full flight is refused.
 */
static int lg_validate(void *arg, struct dg_flow *f,
		       const Chain__ValidateRequest *req,
		       Chain__ValidateReply *resp)
{
	struct worker *w = arg;
	Chain__AddRequest add = CHAIN__ADD_REQUEST__INIT;
	Chain__AddReply *n;
	char key[96], seat[32];
	int rc;

	if (req->bags > MAX_BAGS) {
		resp->reason = "too many bags";
		return 0;
	}
	snprintf(key, sizeof(key), "seats/%s", req->flight);
	add.key = key;
	add.delta = 1;
	rc = chain__storage__add_sync(w->cf, w->storage, &add, &n,
				      CALL_TIMEOUT);
	if (rc)
		return downstream("logic: Storage.Add", rc);
	if (n->value > SEATS) {
		resp->reason = "flight full";
		return 0;
	}
	snprintf(seat, sizeof(seat), "%" PRId64 "%c", (n->value - 1) / 6 + 1,
		 (char)('A' + (n->value - 1) % 6));
	resp->ok = 1;
	resp->seat = arena_str(f, seat, strlen(seat));
	return resp->seat ? 0 : ST_NOMEM;
}

/* Frontend: Get and Validate in parallel, then Put and Add. */
static int fe_checkin(void *arg, struct dg_flow *f,
		      const Chain__CheckinRequest *req,
		      Chain__CheckinReply *resp)
{
	struct worker *w = arg;
	Chain__GetRequest get = CHAIN__GET_REQUEST__INIT;
	Chain__ValidateRequest val = CHAIN__VALIDATE_REQUEST__INIT;
	Chain__PutRequest put = CHAIN__PUT_REQUEST__INIT;
	Chain__AddRequest add = CHAIN__ADD_REQUEST__INIT;
	Chain__PutReply *pr;
	Chain__AddReply *ar;
	uint64_t deadline = now_ns() + CALL_TIMEOUT * 1000000ull;
	uint32_t get_id, val_id, spins = 0;
	bool have_get = false, have_val = false, found = false, ok = false;
	char key[160], pass[256], miles_key[96];
	const char *seat = NULL;
	uint64_t version = 0;
	int rc;

	snprintf(key, sizeof(key), "pass/%s/%s", req->passenger, req->flight);
	get.key = key;
	val.passenger = req->passenger;
	val.flight = req->flight;
	val.bags = req->bags;
	/* Fan out: both calls are in flight at once on the client flow. */
	rc = chain__storage__get_call(w->cf, w->storage, &get, &get_id);
	if (rc)
		return downstream("frontend: Storage.Get", rc);
	rc = chain__logic__validate_call(w->cf, w->logic, &val, &val_id);
	if (rc)
		return downstream("frontend: Logic.Validate", rc);
	while (!(have_get && have_val)) {
		struct dg_completion c[2];
		int i, n = dg_poll(w->cf, c, 2);

		if (n < 0)
			return downstream("frontend: poll", n);
		if (now_ns() > deadline)
			return downstream("frontend: Get and Validate",
					  -ETIMEDOUT);
		/* Waiting: let the rest of the machine (the "NIC") run. */
		if (!n && (++spins & 63) == 0)
			sched_yield();
		/* Responses are taken (and copied) before the next poll. */
		for (i = 0; i < n; i++) {
			if (c[i].rpc_id == get_id) {
				Chain__GetReply *g;

				rc = chain__storage__get_take(w->cf, &c[i], &g);
				if (rc)
					return downstream(
						"frontend: Storage.Get", rc);
				have_get = true;
				found = g->found;
				version = g->version;
				if (found) {
					resp->boarding_pass = arena_str(
						f, g->value.data, g->value.len);
					if (!resp->boarding_pass)
						return ST_NOMEM;
				}
			} else if (c[i].rpc_id == val_id) {
				Chain__ValidateReply *v;

				rc = chain__logic__validate_take(w->cf, &c[i],
								 &v);
				if (rc)
					return downstream(
						"frontend: Logic.Validate", rc);
				have_val = true;
				ok = v->ok;
				seat = arena_str(
					f, ok ? v->seat : v->reason,
					strlen(ok ? v->seat : v->reason));
				if (!seat)
					return ST_NOMEM;
			}
		}
	}
	if (found) { /* checked in before: the same pass again */
		const char *s = strstr(resp->boarding_pass, "seat ");

		resp->ok = 1;
		resp->booking = version;
		resp->seat = (char *)(s ? s + 5 : "");
		return 0;
	}
	if (!ok) {
		resp->reason = (char *)seat;
		return 0;
	}
	snprintf(pass, sizeof(pass), "%s flight %s seat %s", req->passenger,
		 req->flight, seat);
	put.key = key;
	put.value.data = (uint8_t *)pass;
	put.value.len = strlen(pass);
	rc = chain__storage__put_sync(w->cf, w->storage, &put, &pr,
				      CALL_TIMEOUT);
	if (rc)
		return downstream("frontend: Storage.Put", rc);
	resp->booking = pr->version;
	snprintf(miles_key, sizeof(miles_key), "miles/%s", req->passenger);
	add.key = miles_key;
	add.delta = 100 + 50 * (int64_t)req->bags;
	rc = chain__storage__add_sync(w->cf, w->storage, &add, &ar,
				      CALL_TIMEOUT);
	if (rc)
		return downstream("frontend: Storage.Add", rc);
	resp->miles = ar->value;
	resp->ok = 1;
	resp->seat = (char *)seat;
	resp->boarding_pass = arena_str(f, pass, strlen(pass));
	return resp->boarding_pass ? 0 : ST_NOMEM;
}

static void *tier_thread(void *arg)
{
	static const struct chain__frontend__handlers fh = {.checkin =
								    fe_checkin};
	static const struct chain__logic__handlers lh = {.validate =
								 lg_validate};
	struct worker *w = arg;
	struct tier *t = w->t;
	const struct dg_service_def *def;
	uint32_t idle = 0;

	w->storage = connect_wait(w->cf, &t->storage, CHAIN__STORAGE__SERVICE);
	w->logic = t->frontend ? connect_wait(w->cf, &t->logic,
					      CHAIN__LOGIC__SERVICE)
			       : 0;
	w->rc = w->storage < 0 ? w->storage : w->logic < 0 ? w->logic : 0;
	if (!w->rc) {
		def = t->frontend ? chain__frontend__service(&w->srv.fe, &fh, w,
							     DG_LB_ROUND_ROBIN)
				  : chain__logic__service(&w->srv.lg, &lh, w,
							  DG_LB_ROUND_ROBIN);
		w->rc = dg_serve(w->sf, def, 10000);
	}
	__atomic_add_fetch(&t->ready, 1, __ATOMIC_RELEASE);
	while (!w->rc && !stop) {
		if (dg_serve_poll(w->sf, 32) > 0) {
			idle = 0;
		} else if (++idle > 1024) {
			/*
			 * Idle: yield (a tier shares the machine with the
			 * others and, on soft-RoCE, with the kernel threads
			 * that move its frames), and after a long idle spell
			 * sleep briefly, like libdagger's dispatch threads.
			 */
			if (idle < 1000000) {
				sched_yield();
			} else {
				struct timespec ts = {0, 200000};

				nanosleep(&ts, NULL);
				idle = 999000;
			}
		}
	}
	return NULL;
}

static int run_tier(struct tier *t, uint32_t threads)
{
	uint32_t i;
	int rc = 0;

	for (i = 0; i < threads; i++) {
		struct worker *w = &t->w[i];

		w->t = t;
		w->idx = i;
		w->sf = dg_host_flow(t->h, 2 * i);
		w->cf = dg_host_flow(t->h, 2 * i + 1);
		if (pthread_create(&w->thr, NULL, tier_thread, w))
			break;
		t->n++;
	}
	while (__atomic_load_n(&t->ready, __ATOMIC_ACQUIRE) < (int)t->n)
		usleep(1000);
	for (i = 0; i < t->n; i++)
		if (t->w[i].rc)
			rc = t->w[i].rc;
	if (!rc && t->n == threads) {
		printf("dagger-chain: %s serving with %u thread(s)\n",
		       t->frontend ? "frontend" : "logic", threads);
		fflush(stdout);
		while (!stop)
			usleep(100000); /* any thread may take the signal */
	} else {
		fprintf(stderr, "dagger-chain: %s: %s\n",
			t->frontend ? "frontend" : "logic",
			strerror(rc ? -rc : EAGAIN));
		stop = 1;
	}
	for (i = 0; i < t->n; i++)
		pthread_join(t->w[i].thr, NULL);
	return rc || t->n != threads ? 1 : 0;
}

static int run_storage(struct dg_host *h, uint32_t threads)
{
	static const struct chain__storage__handlers sh = {
		.get = st_get, .put = st_put, .add = st_add};
	static struct chain__storage__server srv;
	static struct store s = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct dg_server *ds;
	int rc;

	rc = chain__storage__server_start(h, &srv, &sh, &s, DG_LB_ROUND_ROBIN,
					  0, threads, &ds);
	if (rc) {
		fprintf(stderr, "dagger-chain: storage: %s\n", strerror(-rc));
		return 1;
	}
	printf("dagger-chain: storage serving with %u thread(s)\n", threads);
	fflush(stdout);
	while (!stop)
		usleep(100000); /* any thread may take the signal */
	dg_server_stop(ds);
	store_free(&s);
	return 0;
}

/* ---- client -------------------------------------------------------------- */

static int cmp64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int run_client(struct dg_host *h, const struct peer *fe, uint32_t n,
		      const char *prefix)
{
	struct dg_flow *f = dg_host_flow(h, 0);
	uint64_t *lat = calloc(n, sizeof(*lat)),
		 *booking = calloc(n, sizeof(*booking));
	uint32_t i, errors = 0, refused = 0;
	int conn = connect_wait(f, fe, CHAIN__FRONTEND__SERVICE);

	if (conn < 0 || !lat || !booking) {
		free(lat);
		free(booking);
		return 1;
	}
	for (i = 0; i < n + n / 10; i++) {
		/* The last tenth checks in the first passengers again. */
		uint32_t p = i < n ? i : i - n;
		Chain__CheckinRequest rq = CHAIN__CHECKIN_REQUEST__INIT;
		Chain__CheckinReply *r;
		char who[32], flight[16], want[96];
		bool ok_expected = p % 5 <= MAX_BAGS;
		uint64_t t0;
		int rc;

		snprintf(who, sizeof(who), "%s-%u", prefix, p);
		snprintf(flight, sizeof(flight), "DG%u", p % FLIGHTS);
		rq.passenger = who;
		rq.flight = flight;
		rq.bags = p % 5;
		t0 = now_ns();
		rc = chain__frontend__checkin_sync(f, conn, &rq, &r, 10000);
		if (i < n)
			lat[i] = now_ns() - t0;
		if (rc) {
			printf("error: %s: %s\n", who,
			       rc < 0 ? strerror(-rc) : dg_status_str(rc));
			errors++;
			continue;
		}
		snprintf(want, sizeof(want), "%s flight %s seat %s", who,
			 flight, r->seat);
		if (r->ok != ok_expected ||
		    (r->ok && (!r->seat[0] || strcmp(r->boarding_pass, want) ||
			       !r->booking)) ||
		    (!r->ok && strcmp(r->reason, "too many bags")) ||
		    (r->ok && i < n &&
		     r->miles != 100 + 50 * (int64_t)(p % 5)) ||
		    (r->ok && i >= n && r->booking != booking[p])) {
			printf("error: %s: unexpected answer ok=%d seat=%s "
			       "pass=\"%s\" reason=\"%s\" booking=%" PRIu64
			       "\n",
			       who, r->ok, r->seat, r->boarding_pass, r->reason,
			       r->booking);
			errors++;
			continue;
		}
		if (!r->ok)
			refused++;
		if (i < n)
			booking[p] = r->booking;
	}
	/* Every booking is a distinct storage version. */
	qsort(booking, n, sizeof(*booking), cmp64);
	for (i = 1; i < n; i++)
		if (booking[i] && booking[i] == booking[i - 1])
			errors++;
	qsort(lat, n, sizeof(*lat), cmp64);
	printf("# check-in through frontend -> logic -> storage\n"
	       "%8s %7s %8s %9s %9s %9s\n"
	       "%8u %7u %8u %9.2f %9.2f %9.2f\n",
	       "checkins", "errors", "refused", "p50_us", "p99_us", "max_us", n,
	       errors, refused, lat[n / 2] / 1e3,
	       lat[(uint64_t)n * 99 / 100] / 1e3, lat[n - 1] / 1e3);
	dg_close(f, conn);
	free(lat);
	free(booking);
	return errors ? 1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dagger-chain storage  --engine ENGINE "
		"[--threads N]\n"
		"       dagger-chain logic    --engine ENGINE [--storage "
		"ADDR:PORT] [--threads N]\n"
		"       dagger-chain frontend --engine ENGINE [--logic "
		"ADDR:PORT]\n"
		"                             [--storage ADDR:PORT] [--threads "
		"N]\n"
		"       dagger-chain client   --engine ENGINE "
		"[--frontend ADDR:PORT] [-n N]\n"
		"                             [--prefix NAME]\n"
		"A tier's ADDR:PORT names the engine it is behind when that is "
		"not the\ncaller's own engine. ENGINE is ADDR[:PORT] (RDMA) or "
		"unix:PATH\n(an engine daemon on this machine). --mode "
		"poll|doorbell|push: how the engine\nlearns of new frames "
		"(RDMA; default doorbell).\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"engine", required_argument, NULL, 'e'},
		{"threads", required_argument, NULL, 't'},
		{"logic", required_argument, NULL, 'l'},
		{"storage", required_argument, NULL, 's'},
		{"frontend", required_argument, NULL, 'f'},
		{"prefix", required_argument, NULL, 'p'},
		{"mode", required_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static struct tier t;
	struct dg_host_opts ho = {.engine_port = 7471};
	struct peer engine = {0}, fe = {0};
	const char *spec = "";
	uint32_t threads = 1, n = 1000;
	const char *role = argc > 1 ? argv[1] : "", *prefix = "passenger";
	struct dg_host *h;
	int c, rc;

	if (strcmp(role, "storage") && strcmp(role, "logic") &&
	    strcmp(role, "frontend") && strcmp(role, "client")) {
		usage(stderr);
		return 2;
	}
	optind = 2;
	setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows up in logs */
	while ((c = getopt_long(argc, argv, "e:t:l:s:f:n:p:m:h", lo, NULL)) !=
	       -1) {
		switch (c) {
		case 'e':
			spec = optarg;
			break;
		case 't':
			threads = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'l':
			parse_peer(optarg, &t.logic);
			break;
		case 's':
			parse_peer(optarg, &t.storage);
			break;
		case 'f':
			parse_peer(optarg, &fe);
			break;
		case 'n':
			n = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'p':
			prefix = optarg;
			break;
		case 'm':
			ho.mode = dg_mode_parse(optarg);
			if (ho.mode < 0) {
				fprintf(stderr,
					"dagger-chain: unknown --mode \"%s\" "
					"(poll, "
					"doorbell or push)\n",
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
	if (dg_host_opts_engine(&ho, spec, engine.addr, sizeof(engine.addr)) ||
	    optind != argc || !threads || threads > DG_MAX_FLOWS / 2 || !n) {
		usage(stderr);
		return 2;
	}
	ho.nflows = !strcmp(role, "client")    ? 1
		    : !strcmp(role, "storage") ? threads
					       : 2 * threads;
	rc = dg_host_attach(&ho, &h);
	if (rc) {
		fprintf(stderr, "dagger-chain: cannot attach to %s: %s\n", spec,
			strerror(-rc));
		return 1;
	}
	signal(SIGINT, on_sig);
	signal(SIGTERM, on_sig);
	if (!strcmp(role, "client")) {
		rc = run_client(h, &fe, n, prefix);
	} else if (!strcmp(role, "storage")) {
		rc = run_storage(h, threads);
	} else {
		t.h = h;
		t.frontend = !strcmp(role, "frontend");
		rc = run_tier(&t, threads);
	}
	dg_host_detach(h);
	return rc;
}
