/* SPDX-License-Identifier: MIT */
/*
 * engine.h - the NIC engine: tenants (attached hosts), the TX poller, the
 * connection table, load balancing, RX delivery and statistics. One engine
 * runs one poll loop on one thread; every function here except
 * dg_nic_attach_local() and dg_nic_stop() must be called from that thread.
 */
#ifndef DG_NIC_ENGINE_H
#define DG_NIC_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct dg_nic;

struct dg_nic_opts {
	const char *listen_addr; /* RDMA address to accept on; NULL: none */
	uint16_t port;		 /* 0: pick one (dg_nic_port) */
	/*
	 * The engine daemon's unix socket: host processes on this machine
	 * attach through it and share their region's memory (a sealed memfd
	 * passed with SCM_RIGHTS) with the engine; NULL: none.
	 */
	const char *shm_path;
	uint32_t read_batch; /* TX slots per READ (default 16) */
	uint32_t engine_id;
	/*
	 * Idle: after spin_us (default 50 us) without work the engine sleeps
	 * until a completion, a host's kick or a timer (see wait_events in
	 * loop.c); at most idle_us at a time (default 100000 us). busy_poll:
	 * never sleep (a dedicated core).
	 */
	uint32_t idle_us;
	uint32_t spin_us;
	bool busy_poll;
	/*
	 * A peer link from which nothing (not even a keepalive) arrived for
	 * this long is declared down; calls through it get UNREACHABLE,
	 * those in flight included (default 3000 ms, see dg_peer_opts).
	 */
	uint32_t peer_timeout_ms;
	/*
	 * Adaptive polling of RDMA tenants' TX rings: a flow is READ back to
	 * back while it is busy (its last READ found frames, frames were
	 * just delivered to it, or it holds requests it has not answered);
	 * an idle flow is READ at intervals that double from 8 us up to this
	 * (default 1000 us). Bounds the extra latency of the first call after
	 * a pause; keeps idle flows from taking the READ rate of busy ones.
	 */
	uint32_t poll_max_us;
	/*
	 * A response whose client has no room in its RX ring holds the
	 * server flow (or peer link) that carries it for at most this long
	 * (default 100000 us); then it is dropped and the client is answered
	 * DG_ST_DROPPED for that call once it reads, and until it has read
	 * those answers its later responses are not held at all. So a client
	 * that stops reading delays the others of its server by one bound.
	 */
	uint32_t hold_us;
	bool verbose;
	/*
	 * The control socket (dagger-ctl, nic/ctl.c): a unix stream socket
	 * taking one JSON request per line; NULL: none. Created with mode
	 * 0660: its owner and group may connect, as its directory allows.
	 */
	const char *ctl_path;
	/*
	 * Large messages over RDMA go through a staging pool: stage_mb MiB
	 * for payloads between this engine's tenants (default 64), and
	 * peer_stage_mb MiB for payloads sent to peer engines, which they
	 * READ from (default 32). Allocated and registered when the first
	 * RDMA tenant or peer link needs it; a message larger than its part
	 * is answered DG_ST_TOO_BIG.
	 */
	uint32_t stage_mb, peer_stage_mb;
};

int dg_nic_create(const struct dg_nic_opts *o, struct dg_nic **out);
void dg_nic_destroy(struct dg_nic *n);
uint16_t dg_nic_port(const struct dg_nic *n);

/*
 * Attaches a host region in this address space (local backend). Safe from
 * any thread: the engine picks it up in its next loop iteration. Returns
 * the tenant id, or a negative errno. The region must stay mapped until
 * dg_nic_detach_local() has returned.
 */
int dg_nic_attach_local(struct dg_nic *n, void *region, uint64_t size);
/* Detaches a local tenant; waits for the engine loop to let go of it. */
int dg_nic_detach_local(struct dg_nic *n, int tenant);
/*
 * The two above in the shape of struct dg_host_opts' attach_local and
 * detach_local callbacks (arg = the engine), for in-process hosts.
 */
int dg_nic_attach_cb(void *nic, void *region, uint64_t size);
void dg_nic_detach_cb(void *nic, int tenant);

/* One loop iteration; returns how much work it did (0: idle). */
int dg_nic_poll(struct dg_nic *n);
/* Runs until dg_nic_stop(); backs off (sleeps) while idle. */
int dg_nic_run(struct dg_nic *n);
/* Makes dg_nic_run() return (async-signal-safe); resume clears it. */
void dg_nic_stop(struct dg_nic *n);
void dg_nic_resume(struct dg_nic *n);

void dg_nic_stats_print(struct dg_nic *n, FILE *f);

/* Reasons a frame or message was dropped, as counted by dg_nic_stats. */
enum dg_nic_drop {
	DG_NIC_DROP_BAD_LEN,	/* len over DG_MAX_MSG, or cnt does not match */
	DG_NIC_DROP_BAD_FLAGS,	/* not exactly one kind, or unknown flags */
	DG_NIC_DROP_BAD_CONN,	/* on no connection of the sender's */
	DG_NIC_DROP_BAD_CTRL,	/* unknown or malformed control message */
	DG_NIC_DROP_TOO_BIG,	/* more slots than the ring holds */
	DG_NIC_DROP_NO_REQUEST, /* a response to no request the flow holds */
	/*
	 * A large message whose descriptor points outside the sender's
	 * payload area (or a sender without one); its caller is answered
	 * DG_ST_BAD_FRAME.
	 */
	DG_NIC_DROP_BAD_PAY,
	DG_NIC_DROP_N,
};

/* The engine's counters, summed over its tenants, flows and links. */
struct dg_nic_stats {
	uint32_t tenants, shm_tenants, conns, services, peers;
	uint64_t rpcs_tx, frames_tx, rpcs_rx, frames_rx; /* host side */
	uint64_t reads, writes, busy, stalled;
	uint64_t drops[DG_NIC_DROP_N];
	uint64_t attach_refused; /* RDMA and shared-memory attaches */
	uint64_t quota_refused;	 /* OPEN, REGISTER over a tenant's share */
	uint64_t peer_rpcs_tx, peer_rpcs_rx, peer_drops;
	uint64_t doorbells; /* hosts' doorbells received (RDMA) */
	uint64_t wakes;	    /* host threads woken after a delivery */
	uint64_t sleeps;    /* times the engine slept (wait_events) */
	/*
	 * Sleeps that ran to their timeout although a shared-memory host
	 * had published meanwhile (its kick did not come): 0 unless the
	 * sleep protocol is broken.
	 */
	uint64_t missed_wakes;
	/*
	 * The per-hop trace of sampled calls (dg_call_traced), ns: server,
	 * a request delivered to its server's RX ring -> the response taken
	 * from the server's TX ring; remote, a request sent to a peer engine
	 * -> its response back at this engine.
	 */
	uint64_t trace_server_n, trace_remote_n;
	double trace_server_p50_ns, trace_server_p99_ns;
	double trace_remote_p50_ns, trace_remote_p99_ns;
	/*
	 * Answers dropped after the hold bound (dg_nic_opts.hold_us): their
	 * clients' RX rings stayed full; each was told DG_ST_DROPPED.
	 */
	uint64_t dropped;
	/* REGISTERs refused: another tenant's service (DG_ST_DENIED). */
	uint64_t denied;
	/*
	 * Large messages: taken from hosts (and from peers), delivered to
	 * hosts, payload bytes moved; staging bytes held now (the pool's
	 * both parts), and payload transfers in flight now. Once traffic
	 * stops, the last two return to 0 (nothing leaks).
	 */
	uint64_t pay_tx, pay_rx, pay_bytes;
	uint64_t stage_used, xfers;
};

/*
 * A consistent snapshot of the counters, taken by the engine's loop
 * thread: safe from any thread while dg_nic_run() runs (it waits for the
 * loop, at most timeout_ms: -ETIMEDOUT); from the loop thread itself (or
 * when no thread runs the loop) it reads them directly.
 */
int dg_nic_stats(struct dg_nic *n, struct dg_nic_stats *s, int timeout_ms);

/*
 * Settings that change while the engine runs (dagger-ctl set, reload).
 * Safe from any thread (run on the loop thread, as dg_nic_stats);
 * -ERANGE for a value out of its range (docs/DEPLOY.md), -EINVAL for an
 * unknown setting.
 */
enum dg_nic_setting {
	DG_NIC_SET_BATCH,	    /* TX slots per READ, 1..1024 */
	DG_NIC_SET_SPIN_US,	    /* 1..10^7 */
	DG_NIC_SET_IDLE_US,	    /* 1..10^7 */
	DG_NIC_SET_POLL_MAX_US,	    /* 1..10^6 */
	DG_NIC_SET_PEER_TIMEOUT_MS, /* 60..300000, links up now too */
	DG_NIC_SET_VERBOSE,	    /* 0 or 1 */
	DG_NIC_SET_HOLD_US,	    /* 1..10^7 */
	DG_NIC_SET_N,
};

int dg_nic_set(struct dg_nic *n, enum dg_nic_setting what, uint32_t value);

/*
 * Opens the control socket at path (as dg_nic_opts.ctl_path does), before
 * dg_nic_run: 0, -EADDRINUSE (a live engine's socket is there; a stale
 * socket file is replaced), or another negative errno.
 */
int dg_nic_ctl_listen(struct dg_nic *n, const char *path);
/* The control socket's path, or NULL. */
const char *dg_nic_ctl_path(const struct dg_nic *n);
/* The setting's name as dagger-ctl and the description spell it. */
const char *dg_nic_setting_name(enum dg_nic_setting what);
/* Its current value (loop thread, or while no thread runs the loop). */
uint32_t dg_nic_setting_get(const struct dg_nic *n, enum dg_nic_setting what);

/*
 * Sets service's load-balancing policy (enum dg_lb_policy): now, if it is
 * registered, and for every later registration of the name, over the
 * policy its servers ask for. A negative policy forgets the setting
 * (the service keeps the policy it has). 0, -EINVAL, -ENOSPC (too many).
 */
int dg_nic_set_policy(struct dg_nic *n, const char *service, int policy);

/*
 * What the control socket's "reload" runs (dagger-nic: re-read the
 * description). On the loop thread; returns 0 with what changed in msg,
 * or a negative errno with why nothing was applied.
 */
typedef int (*dg_nic_reload_fn)(void *arg, char *msg, size_t len);
void dg_nic_set_reload(struct dg_nic *n, dg_nic_reload_fn fn, void *arg);

/*
 * Handles one control request (a JSON object, the protocol of the
 * control socket; docs/DEPLOY.md) and writes the one-line JSON answer,
 * newline included, into out (at most cap bytes; longer answers are
 * refused with an error answer). Safe from any thread. Returns the
 * answer's length.
 */
size_t dg_nic_ctl_request(struct dg_nic *n, const char *req, size_t len,
			  char *out, size_t cap);

#endif /* DG_NIC_ENGINE_H */
