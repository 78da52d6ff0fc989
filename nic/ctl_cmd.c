// SPDX-License-Identifier: MIT
/*
 * ctl_cmd.c - the control protocol's commands (docs/DEPLOY.md, "The
 * control socket"). A request is one JSON object: {"v":1,"cmd":NAME,...};
 * the answer is one JSON object on one line: {"v":1,"ok":true,...} or
 * {"v":1,"ok":false,"error":REASON}. Runs on the loop thread (ctl.c, or
 * dg_nic_ctl_request through nic_call), so it reads and changes the
 * engine's state directly; nothing here is on the per-RPC path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "dg_json.h"
#include "engine_impl.h"

#define CTL_PROTOCOL 1

static const char *const drop_names[DROP_NREASONS] = {
	"bad_len", "bad_flags",	 "bad_conn", "bad_ctrl",
	"too_big", "no_request", "bad_pay",
};

static const char *const commands[] = {
	"hello",	"stats",	"get",		"set",	  "tenant.list",
	"tenant.drain", "tenant.evict", "service.list", "reload",
};

static void fail(struct dg_buf *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct dg_buf *o, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	dg_buf_printf(o, "{\"v\":%d,\"ok\":false,\"error\":", CTL_PROTOCOL);
	dg_buf_jstr(o, msg);
	dg_buf_add(o, "}", 1);
}

static void ok_begin(struct dg_buf *o)
{
	dg_buf_printf(o, "{\"v\":%d,\"ok\":true", CTL_PROTOCOL);
}

static const char *tenant_kind(const struct tenant *t)
{
	return !t->direct ? "rdma" : t->local_region ? "local" : "shm";
}

static uint32_t pend_count(const struct flow *fl)
{
	uint32_t i, k = 0;

	for (i = fl->pend_head; i != fl->pend_tail; i++)
		k += fl->pend[i & fl->pend_mask].conn != NO_CONN;
	return k;
}

static uint32_t tenant_conns(const struct dg_nic *n, uint32_t tid)
{
	uint32_t c, k = 0;

	for (c = 0; c < MAX_CONNS; c++)
		k += n->conns[c].state != CONN_FREE &&
		     n->conns[c].state != CONN_INBOUND &&
		     n->conns[c].tenant == tid;
	return k;
}

static uint32_t service_conns(const struct dg_nic *n, uint32_t si)
{
	uint32_t c, k = 0;

	for (c = 0; c < MAX_CONNS; c++)
		k += (n->conns[c].state == CONN_OPEN ||
		      n->conns[c].state == CONN_INBOUND) &&
		     n->conns[c].svc == si;
	return k;
}

static void flow_stats_json(struct dg_buf *o, const struct flow_stats *s)
{
	uint32_t r;

	dg_buf_printf(
		o,
		"\"rpcs_tx\":%llu,\"frames_tx\":%llu,\"bytes_tx\":%llu,"
		"\"rpcs_rx\":%llu,\"frames_rx\":%llu,\"reads\":%llu,"
		"\"read_slots\":%llu,\"writes\":%llu,\"busy\":%llu,"
		"\"stalled\":%llu,\"doorbells\":%llu,\"wakes\":%llu,"
		"\"dropped\":%llu,\"drops\":{",
		(unsigned long long)s->rpcs_tx,
		(unsigned long long)s->frames_tx,
		(unsigned long long)s->bytes_tx, (unsigned long long)s->rpcs_rx,
		(unsigned long long)s->frames_rx, (unsigned long long)s->reads,
		(unsigned long long)s->read_slots,
		(unsigned long long)s->writes, (unsigned long long)s->busy,
		(unsigned long long)s->stalled,
		(unsigned long long)s->doorbells, (unsigned long long)s->wakes,
		(unsigned long long)s->dropped);
	for (r = 0; r < DROP_NREASONS; r++)
		dg_buf_printf(o, "%s\"%s\":%llu", r ? "," : "", drop_names[r],
			      (unsigned long long)s->drops[r]);
	dg_buf_add(o, "}", 1);
}

static void tenant_json(const struct dg_nic *n, struct dg_buf *o, uint32_t i,
			bool flows)
{
	const struct tenant *t = &n->tenants[i];
	uint32_t j, pend = 0;

	for (j = 0; j < t->nflows; j++)
		pend += pend_count(&t->flows[j]);
	dg_buf_printf(o,
		      "{\"id\":%u,\"kind\":\"%s\",\"flows\":%u,\"slots\":%u,"
		      "\"dead\":%s,\"draining\":%s,\"conns\":%u,"
		      "\"pending\":%u",
		      i, tenant_kind(t), t->nflows, t->slots,
		      t->dead ? "true" : "false",
		      t->draining ? "true" : "false", tenant_conns(n, i), pend);
	/* The flows' interface mode: one name, or "mixed". */
	for (j = 1; j < t->nflows && t->flows[j].mode == t->flows[0].mode; j++)
		;
	dg_buf_printf(o, ",\"mode\":\"%s\"",
		      t->direct	      ? "shm"
		      : j < t->nflows ? "mixed"
				      : dg_mode_name(t->flows[0].mode));
	if (flows) {
		dg_buf_add(o, ",\"flow\":[", 9);
		for (j = 0; j < t->nflows; j++) {
			const struct flow *fl = &t->flows[j];

			dg_buf_printf(o, "%s{\"flow\":%u,", j ? "," : "", j);
			flow_stats_json(o, &fl->st);
			dg_buf_printf(o,
				      ",\"mode\":\"%s\",\"pending\":%u,"
				      "\"rx_credits\":%u,\"tx_unreported\":%u}",
				      t->direct ? "shm"
						: dg_mode_name(fl->mode),
				      pend_count(fl),
				      nic_rx_room((struct tenant *)t,
						  (struct flow *)fl),
				      fl->tx_tail - fl->tx_head_sent);
		}
		dg_buf_add(o, "]", 1);
	}
	dg_buf_add(o, "}", 1);
}

static void latency_json(struct dg_buf *o, const struct dg_hist *h,
			 bool buckets)
{
	uint32_t i;
	bool first = true;

	dg_buf_printf(o,
		      "{\"count\":%llu,\"sum_ns\":%llu,\"max_ns\":%llu,"
		      "\"p50_us\":%.3f,\"p99_us\":%.3f,\"p999_us\":%.3f",
		      (unsigned long long)h->n, (unsigned long long)h->sum,
		      (unsigned long long)h->max,
		      dg_hist_quantile(h->b, h->n, h->max, 0.5) / 1e3,
		      dg_hist_quantile(h->b, h->n, h->max, 0.99) / 1e3,
		      dg_hist_quantile(h->b, h->n, h->max, 0.999) / 1e3);
	if (buckets) {
		dg_buf_add(o, ",\"buckets\":[", 12);
		for (i = 0; i < DG_HIST_BUCKETS; i++) {
			if (!h->b[i])
				continue;
			dg_buf_printf(o, "%s[%u,%llu]", first ? "" : ",", i,
				      (unsigned long long)h->b[i]);
			first = false;
		}
		dg_buf_add(o, "]", 1);
	}
	dg_buf_add(o, "}", 1);
}

static void service_json(const struct dg_nic *n, struct dg_buf *o, uint32_t i,
			 bool stats, bool buckets)
{
	const struct service *s = &n->services[i];
	uint32_t j;

	dg_buf_printf(o, "{\"id\":%u,\"name\":", i);
	dg_buf_jstr(o, s->name);
	dg_buf_printf(o,
		      ",\"policy\":\"%s\",\"policy_set\":%s,\"active\":%u,"
		      "\"conns\":%u,\"servers\":[",
		      dg_lb_policy_name(s->lb), s->lb_fixed ? "true" : "false",
		      s->nact, service_conns(n, i));
	for (j = 0; j < s->nservers; j++)
		dg_buf_printf(
			o, "%s{\"tenant\":%u,\"flow\":%u,\"draining\":%s}",
			j ? "," : "", s->servers[j].tenant, s->servers[j].flow,
			n->tenants[s->servers[j].tenant].draining ? "true"
								  : "false");
	dg_buf_add(o, "]", 1);
	if (stats) {
		dg_buf_printf(o,
			      ",\"requests\":%llu,\"responses\":%llu,"
			      "\"busy\":%llu,\"unreachable\":%llu,"
			      "\"latency\":",
			      (unsigned long long)s->st.requests,
			      (unsigned long long)s->st.lat.n,
			      (unsigned long long)s->st.busy,
			      (unsigned long long)s->st.unreachable);
		latency_json(o, &s->st.lat, buckets);
	}
	dg_buf_add(o, "}", 1);
}

static void peer_json(const struct dg_nic *n, struct dg_buf *o, uint32_t i)
{
	const struct peer_ref *p = &n->peers[i];
	struct dg_peer_stats ls;

	dg_peer_stats(p->link, &ls);
	dg_buf_printf(o, "{\"id\":%u,\"addr\":", i);
	dg_buf_jstr(o, p->outbound ? p->addr : "");
	dg_buf_printf(
		o,
		",\"port\":%u,\"outbound\":%s,\"engine\":%u,\"up\":%s,"
		"\"rpcs_tx\":%llu,\"frames_tx\":%llu,\"rpcs_rx\":%llu,"
		"\"frames_rx\":%llu,\"busy\":%llu,\"drops\":%llu,"
		"\"msgs_tx\":%llu,\"msgs_rx\":%llu,\"credit_stalls\":%llu,"
		"\"credit_msgs\":%llu,\"keepalives\":%llu,\"credits\":%u,"
		"\"fifo\":%u}",
		p->port, p->outbound ? "true" : "false",
		dg_peer_remote_engine(p->link), p->dead ? "false" : "true",
		(unsigned long long)p->st.rpcs_tx,
		(unsigned long long)p->st.frames_tx,
		(unsigned long long)p->st.rpcs_rx,
		(unsigned long long)p->st.frames_rx,
		(unsigned long long)p->st.busy, (unsigned long long)p->st.drops,
		(unsigned long long)ls.msgs_tx, (unsigned long long)ls.msgs_rx,
		(unsigned long long)ls.credit_stalls,
		(unsigned long long)ls.credit_msgs,
		(unsigned long long)ls.keepalives, dg_peer_credits(p->link),
		p->tail - p->head);
}

static void cmd_stats(struct dg_nic *n, const struct dg_json *rq,
		      struct dg_buf *o)
{
	const struct dg_json *h = dg_json_get(rq, "hist");
	bool buckets = h && h->type == DG_JSON_BOOL && h->b;
	static const char *const states[] = {"free",   "open",	  "binding",
					     "remote", "inbound", "dead"};
	uint32_t cs[6] = {0}, i, k, ntenants = 0, nshm = 0, nsvc = 0, npeer = 0;
	/* Counters only grow: tenants gone count on. */
	struct flow_stats tot = n->gone;

	for (i = 0; i < MAX_CONNS; i++)
		if (n->conns[i].state < 6)
			cs[n->conns[i].state]++;
	for (i = 0; i < MAX_TENANTS; i++) {
		const struct tenant *t = &n->tenants[i];

		if (!t->used)
			continue;
		ntenants++;
		nshm += t->direct;
		for (k = 0; k < t->nflows; k++)
			nic_flow_stats_add(&tot, &t->flows[k].st);
	}
	for (i = 0; i < MAX_SERVICES; i++)
		nsvc += n->services[i].used && n->services[i].nservers;
	for (i = 0; i < MAX_PEERS; i++)
		npeer += n->peers[i].used && !n->peers[i].dead;
	ok_begin(o);
	dg_buf_printf(o,
		      ",\"engine\":{\"id\":%u,\"uptime_s\":%.3f,\"loops\":%llu,"
		      "\"sleeps\":%llu,\"missed_wakes\":%llu,\"tenants\":%u,"
		      "\"shm_tenants\":%u,\"services\":%u,"
		      "\"peers\":%u,\"attach_refused\":%llu,"
		      "\"quota_refused\":%llu,\"denied\":%llu,\"conns\":{",
		      n->o.engine_id, (double)(mono_ns() - n->start_ns) / 1e9,
		      (unsigned long long)n->loops,
		      (unsigned long long)n->sleeps,
		      (unsigned long long)n->missed_wakes, ntenants, nshm, nsvc,
		      npeer, (unsigned long long)n->attach_refused,
		      (unsigned long long)n->quota_refused,
		      (unsigned long long)n->denied);
	for (i = 1, k = 0; i < 6; i++) {
		dg_buf_printf(o, "\"%s\":%u,", states[i], cs[i]);
		k += cs[i];
	}
	dg_buf_printf(o, "\"total\":%u},\"totals\":{", k);
	flow_stats_json(o, &tot);
	/* Sampled calls' hops (dg_call_traced, dagger-bench --trace). */
	dg_buf_add(o, "},\"trace\":{\"server\":", 20);
	latency_json(o, &n->trace_server, false);
	dg_buf_add(o, ",\"remote\":", 10);
	latency_json(o, &n->trace_remote, false);
	dg_buf_add(o, "}},\"tenants\":[", 14);
	for (i = 0, k = 0; i < MAX_TENANTS; i++) {
		if (!n->tenants[i].used)
			continue;
		if (k++)
			dg_buf_add(o, ",", 1);
		tenant_json(n, o, i, true);
	}
	dg_buf_add(o, "],\"services\":[", 14);
	for (i = 0, k = 0; i < MAX_SERVICES; i++) {
		if (!n->services[i].used)
			continue;
		if (k++)
			dg_buf_add(o, ",", 1);
		service_json(n, o, i, true, buckets);
	}
	dg_buf_add(o, "],\"peers\":[", 11);
	for (i = 0, k = 0; i < MAX_PEERS; i++) {
		if (!n->peers[i].used)
			continue;
		if (k++)
			dg_buf_add(o, ",", 1);
		peer_json(n, o, i);
	}
	dg_buf_add(o, "]}", 2);
}

static void cmd_hello(struct dg_nic *n, struct dg_buf *o)
{
	size_t i;

	ok_begin(o);
	dg_buf_printf(o, ",\"protocol\":%d,\"engine_id\":%u,\"commands\":[",
		      CTL_PROTOCOL, n->o.engine_id);
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		dg_buf_printf(o, "%s\"%s\"", i ? "," : "", commands[i]);
	dg_buf_add(o, "]}", 2);
}

static void cmd_get(struct dg_nic *n, struct dg_buf *o)
{
	uint32_t i;

	ok_begin(o);
	dg_buf_add(o, ",\"settings\":{", 13);
	for (i = 0; i < DG_NIC_SET_N; i++)
		dg_buf_printf(o, "%s\"%s\":%u", i ? "," : "",
			      dg_nic_setting_name(i), dg_nic_setting_get(n, i));
	dg_buf_printf(o, "},\"fixed\":{\"id\":%u,\"listen\":", n->o.engine_id);
	dg_buf_jstr(o, n->o.listen_addr ? n->o.listen_addr : "");
	dg_buf_printf(o, ",\"port\":%u,\"shm\":", dg_nic_port(n));
	dg_buf_jstr(o, n->o.shm_path ? n->o.shm_path : "");
	dg_buf_add(o, ",\"ctl\":", 7);
	dg_buf_jstr(o, dg_nic_ctl_path(n) ? dg_nic_ctl_path(n) : "");
	dg_buf_add(o, "},\"policies\":{", 14);
	for (i = 0; i < n->nsvc_conf; i++) {
		if (i)
			dg_buf_add(o, ",", 1);
		dg_buf_jstr(o, n->svc_conf[i].name);
		dg_buf_printf(o, ":\"%s\"",
			      dg_lb_policy_name(n->svc_conf[i].lb));
	}
	dg_buf_add(o, "}}", 2);
}

/* A member that names a number: a JSON number or a decimal string. */
static int get_u32(const struct dg_json *rq, const char *key, uint32_t *v)
{
	const struct dg_json *j = dg_json_get(rq, key);
	unsigned long long x;
	char *end;

	if (!j)
		return -ENOENT;
	if (j->type == DG_JSON_NUM && j->is_uint && j->u <= UINT32_MAX) {
		*v = (uint32_t)j->u;
		return 0;
	}
	if (j->type == DG_JSON_STR && j->str[0] >= '0' && j->str[0] <= '9') {
		errno = 0;
		x = strtoull(j->str, &end, 10);
		if (!errno && !*end && x <= UINT32_MAX) {
			*v = (uint32_t)x;
			return 0;
		}
	}
	if (j->type == DG_JSON_BOOL) {
		*v = j->b;
		return 0;
	}
	return -EINVAL;
}

static int get_tenant(struct dg_nic *n, const struct dg_json *rq,
		      struct dg_buf *o, uint32_t *tid)
{
	int rc = get_u32(rq, "tenant", tid);

	if (rc) {
		fail(o, "%s \"tenant\" (a tenant id, as tenant list shows)",
		     rc == -ENOENT ? "missing" : "bad");
		return -EINVAL;
	}
	if (*tid >= MAX_TENANTS || !n->tenants[*tid].used) {
		fail(o, "no tenant %u", *tid);
		return -ENOENT;
	}
	return 0;
}

/*
 * A tenant's interface mode (every flow's). The mode is the host's to
 * switch (the switch travels in its TX ring, in order with its frames:
 * DG_CTRL_MODE), so the engine asks: it writes the request into each
 * flow's engine line (mode_req); the host switches the flow the next time
 * it polls it idle with no call outstanding. The answer says it was
 * asked; tenant list shows each flow's mode as the engine runs it.
 */
static void set_mode(struct dg_nic *n, const struct dg_json *rq,
		     struct dg_buf *o)
{
	const char *v = dg_json_str(rq, "value");
	struct tenant *t;
	uint32_t tid, f;
	int mode;

	if (get_tenant(n, rq, o, &tid))
		return;
	t = &n->tenants[tid];
	mode = v ? dg_mode_parse(v) : -EINVAL;
	if (mode < 0) {
		fail(o, "set mode: \"value\" must be poll, doorbell or push");
		return;
	}
	if (t->direct) {
		fail(o,
		     "set mode: tenant %u is on shared memory, polled in "
		     "place in every mode",
		     tid);
		return;
	}
	for (f = 0; f < t->nflows; f++) {
		struct flow *fl = &t->flows[f];

		fl->mode_req_seq++;
		fl->ctrl->mode_req = fl->mode_req_seq << 8 | (uint32_t)mode;
		if (t->hm->ops->write(
			    t->hm,
			    dg_ctrl_off(&t->lay, f) +
				    offsetof(struct dg_flow_ctrl, mode_req),
			    4, mktag(TAG_WRITE, f, 2))) {
			fail(o,
			     "set mode: tenant %u: its queue is full, try "
			     "again",
			     tid);
			return;
		}
		/* A sleeping thread must wake to see it: the loop's next
		 * flush sends the wake-up after this WRITE, same queue. */
		if (fl->sleep_seq && fl->sleep_seq != fl->woken_seq)
			fl->wake_due = true;
	}
	t->hm->ops->flush(t->hm);
	ok_begin(o);
	dg_buf_printf(o,
		      ",\"tenant\":%u,\"mode\":\"%s\",\"requested\":true,"
		      "\"note\":\"each flow switches when its host is idle "
		      "with no call outstanding\"}",
		      tid, dg_mode_name(mode));
}

static void cmd_set(struct dg_nic *n, const struct dg_json *rq,
		    struct dg_buf *o)
{
	const char *name = dg_json_str(rq, "name");
	const struct dg_json *val = dg_json_get(rq, "value");
	uint32_t i, v;
	int rc;

	if (!name) {
		fail(o, "set: missing \"name\" (batch, spin_us, idle_us, "
			"poll_max_us, peer_timeout_ms, verbose, hold_us, "
			"policy, mode)");
		return;
	}
	if (!strcmp(name, "mode")) {
		set_mode(n, rq, o);
		return;
	}
	if (!strcmp(name, "policy")) {
		const char *svc = dg_json_str(rq, "service");
		const char *pol = dg_json_str(rq, "value");
		int p = pol ? dg_lb_policy_parse(pol) : -EINVAL;

		if (!svc || !svc[0] || strlen(svc) >= DG_NAME_MAX) {
			fail(o, "set policy: missing or bad \"service\"");
			return;
		}
		if (p < 0) {
			fail(o,
			     "set policy: unknown policy \"%s\" (rr, static, "
			     "random, key)",
			     pol ? pol : "");
			return;
		}
		rc = dg_nic_set_policy(n, svc, p);
		if (rc) {
			fail(o, "set policy: %s", strerror(-rc));
			return;
		}
		ok_begin(o);
		dg_buf_add(o, ",\"service\":", 11);
		dg_buf_jstr(o, svc);
		dg_buf_printf(o, ",\"policy\":\"%s\",\"registered\":%s}",
			      dg_lb_policy_name((unsigned)p),
			      nic_svc_open(n, svc) ? "true" : "false");
		return;
	}
	for (i = 0; i < DG_NIC_SET_N; i++)
		if (!strcmp(name, dg_nic_setting_name(i)))
			break;
	if (i == DG_NIC_SET_N) {
		fail(o,
		     "set: unknown setting \"%s\" (batch, spin_us, idle_us, "
		     "poll_max_us, peer_timeout_ms, verbose, hold_us, policy, "
		     "mode)",
		     name);
		return;
	}
	if (!val || get_u32(rq, "value", &v)) {
		fail(o, "set %s: %s \"value\" (a non-negative integer)", name,
		     val ? "bad" : "missing");
		return;
	}
	rc = dg_nic_set(n, i, v);
	if (rc == -ERANGE) {
		static const char *const range[DG_NIC_SET_N] = {
			"1..1024",    "1..10000000", "1..10000000",
			"1..1000000", "60..300000",  "0..1",
			"1..10000000"};

		fail(o, "set %s: %u is out of range %s", name, v, range[i]);
		return;
	}
	if (rc) {
		fail(o, "set %s: %s", name, strerror(-rc));
		return;
	}
	ok_begin(o);
	dg_buf_printf(o, ",\"name\":\"%s\",\"value\":%u}", name,
		      dg_nic_setting_get(n, i));
}

static void cmd_tenant_list(struct dg_nic *n, struct dg_buf *o)
{
	uint32_t i, k = 0;

	ok_begin(o);
	dg_buf_add(o, ",\"tenants\":[", 12);
	for (i = 0; i < MAX_TENANTS; i++) {
		if (!n->tenants[i].used)
			continue;
		if (k++)
			dg_buf_add(o, ",", 1);
		tenant_json(n, o, i, false);
	}
	dg_buf_add(o, "]}", 2);
}

static void cmd_tenant_drain(struct dg_nic *n, const struct dg_json *rq,
			     struct dg_buf *o)
{
	const struct dg_json *on = dg_json_get(rq, "on");
	uint32_t tid, i;
	bool drain = true;

	if (get_tenant(n, rq, o, &tid))
		return;
	if (on) {
		if (on->type != DG_JSON_BOOL) {
			fail(o, "tenant.drain: \"on\" must be true or false");
			return;
		}
		drain = on->b;
	}
	/*
	 * Its server flows take no new requests from now on; those they hold
	 * are answered as usual (pending shows how many are left), and its
	 * own calls go on. Key-based services move its keys to the others.
	 */
	n->tenants[tid].draining = drain;
	for (i = 0; i < MAX_SERVICES; i++)
		if (n->services[i].used)
			nic_svc_rebuild(&n->services[i], n);
	ok_begin(o);
	dg_buf_add(o, ",\"tenant\":", 10);
	tenant_json(n, o, tid, false);
	dg_buf_add(o, "}", 1);
}

static void cmd_tenant_evict(struct dg_nic *n, const struct dg_json *rq,
			     struct dg_buf *o)
{
	uint32_t tid;

	if (get_tenant(n, rq, o, &tid))
		return;
	/*
	 * An in-process host detaches itself (dg_nic_detach_local names
	 * its tenant id, which must not be freed and reused under it).
	 */
	if (n->tenants[tid].local_region) {
		fail(o,
		     "tenant.evict: tenant %u is in the engine's own process; "
		     "it detaches itself",
		     tid);
		return;
	}
	/*
	 * As if it had gone away: callers of the requests it holds are
	 * answered UNREACHABLE, its services and connections go, and its
	 * RDMA connection or unix socket is closed, which its host sees
	 * (dg_host_check: -ENOTCONN).
	 */
	if (n->o.verbose)
		fprintf(stderr, "dagger-nic: tenant %u evicted\n", tid);
	nic_tenant_free(n, tid);
	ok_begin(o);
	dg_buf_printf(o, ",\"evicted\":%u}", tid);
}

static void cmd_service_list(struct dg_nic *n, struct dg_buf *o)
{
	uint32_t i, k = 0;

	ok_begin(o);
	dg_buf_add(o, ",\"services\":[", 13);
	for (i = 0; i < MAX_SERVICES; i++) {
		if (!n->services[i].used)
			continue;
		if (k++)
			dg_buf_add(o, ",", 1);
		service_json(n, o, i, false, false);
	}
	dg_buf_add(o, "]}", 2);
}

static void cmd_reload(struct dg_nic *n, struct dg_buf *o)
{
	char msg[2048] = "";
	int rc;

	if (!n->reload) {
		fail(o, "reload: this engine has no description to re-read "
			"(it was not started with --config)");
		return;
	}
	rc = n->reload(n->reload_arg, msg, sizeof(msg));
	if (rc) {
		fail(o, "reload: %s", msg[0] ? msg : strerror(-rc));
		return;
	}
	ok_begin(o);
	dg_buf_add(o, ",\"changed\":", 11);
	dg_buf_jstr(o, msg);
	dg_buf_add(o, "}", 1);
}

void nic_ctl_handle(struct dg_nic *n, const char *line, size_t len,
		    struct dg_buf *o)
{
	size_t start = o->len;
	struct dg_json *rq = NULL;
	const struct dg_json *v;
	const char *cmd;
	char err[160];
	size_t i;

	if (dg_json_parse(line, len, &rq, err, sizeof(err))) {
		fail(o, "bad request: not JSON (%s)", err);
		goto out;
	}
	if (rq->type != DG_JSON_OBJ) {
		fail(o, "bad request: not a JSON object");
		goto out;
	}
	v = dg_json_get(rq, "v");
	if (!v || v->type != DG_JSON_NUM || !v->is_uint ||
	    v->u != CTL_PROTOCOL) {
		fail(o,
		     "bad request: protocol version %s (this engine speaks "
		     "\"v\":%d)",
		     v ? "not supported" : "missing", CTL_PROTOCOL);
		goto out;
	}
	cmd = dg_json_str(rq, "cmd");
	if (!cmd) {
		fail(o, "bad request: no \"cmd\"");
		goto out;
	}
	if (!strcmp(cmd, "hello"))
		cmd_hello(n, o);
	else if (!strcmp(cmd, "stats"))
		cmd_stats(n, rq, o);
	else if (!strcmp(cmd, "get"))
		cmd_get(n, o);
	else if (!strcmp(cmd, "set"))
		cmd_set(n, rq, o);
	else if (!strcmp(cmd, "tenant.list"))
		cmd_tenant_list(n, o);
	else if (!strcmp(cmd, "tenant.drain"))
		cmd_tenant_drain(n, rq, o);
	else if (!strcmp(cmd, "tenant.evict"))
		cmd_tenant_evict(n, rq, o);
	else if (!strcmp(cmd, "service.list"))
		cmd_service_list(n, o);
	else if (!strcmp(cmd, "reload"))
		cmd_reload(n, o);
	else {
		char known[256] = "";
		size_t k = 0;

		for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			k += (size_t)snprintf(known + k, sizeof(known) - k,
					      "%s%s", i ? ", " : "",
					      commands[i]);
		fail(o, "unknown command \"%.64s\" (known: %s)", cmd, known);
	}
out:
	dg_json_free(rq);
	if (o->err) {
		/* Too large (or no memory): say so instead. */
		int e = o->err;

		o->len = start;
		o->err = 0;
		if (o->p)
			o->p[start] = 0;
		fail(o, "the answer does not fit (%s)", strerror(-e));
	}
	dg_buf_add(o, "\n", 1);
}

struct req_arg {
	const char *req;
	size_t len;
	struct dg_buf out;
};

static void req_on_loop(struct dg_nic *n, void *arg)
{
	struct req_arg *a = arg;

	nic_ctl_handle(n, a->req, a->len, &a->out);
}

size_t dg_nic_ctl_request(struct dg_nic *n, const char *req, size_t len,
			  char *out, size_t cap)
{
	struct req_arg a = {.req = req, .len = len};
	size_t k;

	if (!cap)
		return 0;
	dg_buf_init(&a.out, cap);
	if (nic_call(n, req_on_loop, &a, 10000)) {
		k = (size_t)snprintf(out, cap,
				     "{\"v\":1,\"ok\":false,\"error\":\"the "
				     "engine's loop did not answer\"}\n");
		dg_buf_free(&a.out);
		return k < cap ? k : cap - 1;
	}
	k = a.out.len < cap ? a.out.len : cap - 1;
	memcpy(out, a.out.p ? a.out.p : "", k);
	out[k] = 0;
	dg_buf_free(&a.out);
	return k;
}

void dg_nic_set_reload(struct dg_nic *n, dg_nic_reload_fn fn, void *arg)
{
	n->reload = fn;
	n->reload_arg = arg;
}
