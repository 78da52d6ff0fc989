/* SPDX-License-Identifier: MIT */
/*
 * dagger/dagger.h - libdagger, the host library applications link.
 *
 * A host attaches to a NIC engine as a tenant and gets flows, one per
 * application thread. Each flow is a TX ring and an RX ring in the host's
 * own memory; in the default polling mode a call is a few stores into the
 * TX ring and a completion is a few loads from the RX ring: no system call,
 * no verb, no lock. A flow belongs to the first thread that uses it; any
 * other thread gets -EPERM.
 *
 * Large messages travel outside the ring: above a threshold a request or
 * response is written into a payload area of the flow (in place, with
 * dg_call_buf() and dg_response_buf()) and the ring carries a one-frame
 * descriptor; the engine moves the bytes (one RDMA READ and one WRITE, or
 * one copy on shared memory) into the receiver's payload area, where the
 * completion or request points (docs/ARCHITECTURE.md, "Large messages").
 *
 * Errors are negative errno values: -EAGAIN (ring or payload area full,
 * poll and retry), -EMSGSIZE (payload over DG_MAX_MSG, the ring or the
 * payload area), -EPERM (wrong thread), -ETIMEDOUT, -ENOTCONN (engine
 * gone), -EINVAL.
 */
#ifndef DAGGER_DAGGER_H
#define DAGGER_DAGGER_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dagger/ctrl.h"
#include "dagger/frame.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dg_host;
struct dg_flow;

struct dg_host_opts {
	/* RDMA backend: the engine's address and port; src selects the
	 * local device (its address), NULL lets routing choose. */
	const char *engine_addr;
	uint16_t engine_port;
	const char *src_addr;
	/*
	 * Shared-memory backend: the unix socket of an engine daemon on this
	 * machine (dagger-nic --shm PATH); used when engine_addr is NULL.
	 * The region is a memfd the engine maps: no RDMA, no root.
	 */
	const char *shm_path;
	/* In-process backend (an engine thread of this process): used when
	 * both are NULL. Called with the region to attach; returns a tenant
	 * id. */
	int (*attach_local)(void *arg, void *region, uint64_t size);
	void (*detach_local)(void *arg, int tenant);
	void *local_arg;
	uint32_t nflows; /* default 1 */
	uint32_t slots;	 /* per ring, power of two; default 2048 */
	int timeout_ms;	 /* attach timeout; default 10000 */
	/*
	 * Checksum every slot (CRC32C) on shared-memory rings too, as RDMA
	 * rings always do: for tests and for measuring what checksums cost.
	 */
	int csum;
	/*
	 * RDMA: how the engine learns of new frames (enum dg_mode): poll (it
	 * READs the TX rings; the host posts no verb), doorbell (the default:
	 * one small WRITE per batch; an idle engine sleeps) or push (the
	 * frames themselves are WRITten into the engine). Per flow
	 * afterwards: dg_flow_set_mode(). 0 takes $DG_MODE if set.
	 */
	int mode;
	/*
	 * Waiting (dg_wait, dg_call_sync, dispatch threads): spin this long
	 * (default 50 us) before the thread sleeps until the engine wakes it;
	 * busy_poll: never sleep (a dedicated core). 0 takes $DG_SPIN_US
	 * and $DG_BUSY_POLL (1) if set; a malformed value fails the attach
	 * (-EINVAL).
	 */
	uint32_t spin_us;
	int busy_poll;
	/*
	 * Between the spin and the sleep: keep looking this long more
	 * (default 2000 us), giving the CPU away (sched_yield) at each look,
	 * so that on fewer CPUs than busy threads the engine, the peer and
	 * the kernel's RDMA work run, and an answer (or request) that comes
	 * within it costs no wake-up. Threads waiting for their own calls
	 * always; those waiting for requests one per host at a time (see
	 * dg_flow_idle). DG_YIELD_OFF: straight to sleep. 0 takes
	 * $DG_YIELD_US if set (0 there: off; malformed: -EINVAL).
	 */
	uint32_t yield_us;
	/*
	 * Large messages. payload: bytes of each of a flow's two payload
	 * areas (TX and RX), a power of two from 4 KiB to 64 MiB; 0: the
	 * default (16 MiB, less with more than 4 flows: 64 MiB over all
	 * flows, at least 1 MiB); DG_PAYLOAD_NONE: none (every message in
	 * ring frames, up to DG_MAX_INLINE; large messages to this host are
	 * answered DG_ST_TOO_BIG). A flow sends and takes messages up to its
	 * payload area's size. large: messages of more bytes than this
	 * travel outside the ring (0: DG_LARGE_DEFAULT; never more than half
	 * the ring holds, 32 + (slots / 2 - 1) * 56 bytes). 0 takes $DG_PAYLOAD
	 * and $DG_LARGE if set (bytes; K, M suffixes).
	 */
	uint64_t payload;
	uint32_t large;
};
#define DG_YIELD_OFF UINT32_MAX

#define DG_PAYLOAD_NONE	 UINT64_MAX
/* Bytes above which a message leaves the ring by default (measured:
 * docs/PERFORMANCE.md, "Large messages"). */
#define DG_LARGE_DEFAULT 4096u

/*
 * Points o at the engine named by spec, as the tools take it: "unix:PATH"
 * (an engine daemon's socket on this machine: o->shm_path) or
 * "ADDR[:PORT]" (RDMA: ADDR is copied into buf of cap bytes for
 * o->engine_addr; the port defaults to 7471). spec must outlive o.
 * 0, or -EINVAL for an empty or malformed spec.
 */
int dg_host_opts_engine(struct dg_host_opts *o, const char *spec, char *buf,
			size_t cap);
/* "unix:PATH" or "ADDR:PORT" of o's engine, for messages. */
const char *dg_host_opts_str(const struct dg_host_opts *o, char *buf,
			     size_t cap);

int dg_host_attach(const struct dg_host_opts *o, struct dg_host **out);
void dg_host_detach(struct dg_host *h);
struct dg_flow *dg_host_flow(struct dg_host *h, uint32_t i);
/*
 * 0 while the engine is reachable, -ENOTCONN once its connection is gone.
 * Costs a system call: for waits and error paths, not per RPC. The
 * blocking calls (dg_call_sync, dg_connect...) check it while they wait.
 */
int dg_host_check(struct dg_host *h);
uint32_t dg_host_nflows(const struct dg_host *h);

/* ---- client ------------------------------------------------------------- */

/*
 * Opens a connection from this flow to service at the engine peer_addr
 * (NULL or "" = the service is behind this host's own engine). Returns the
 * connection id (>= 0; an engine table index and a generation, so an id
 * once closed is never valid again). The flow must have no calls
 * outstanding.
 */
int dg_connect(struct dg_flow *f, const char *peer_addr, uint16_t peer_port,
	       const char *service, int timeout_ms);
int dg_close(struct dg_flow *f, int conn);

/*
 * Asynchronous call:
 *
 *   int dg_call(struct dg_flow *f, int conn, uint16_t fn, const void *req,
 *               size_t len, uint32_t *rpc_id);
 *
 * queues the request and returns 0 with its rpc id in *rpc_id, or -EAGAIN
 * when the TX ring has no room (poll, then retry). Inline (dagger/flow.h):
 * a small call on a shared-memory ring does not leave the caller.
 */
/*
 * dg_call, and the call is sampled for the engines' per-hop trace
 * (DG_FF_TRACE on the request and its response; dg_nic_stats and
 * dagger-ctl stats give each hop's median). A few instructions more than
 * dg_call; plain calls pay nothing for it.
 */
int dg_call_traced(struct dg_flow *f, int conn, uint16_t fn, const void *req,
		   size_t len, uint32_t *rpc_id);

/*
 * Keyed calls. A service whose policy is DG_LB_KEY sends every request
 * that carries one key to the same server flow (while its set of server
 * flows does not change; when it does, only the keys of the flows that
 * joined or left move): a store partitioned across server threads. The
 * key is a 32-bit hash of the application's key; dg_key_hash() is the
 * one generated stubs use. Under other policies the key is ignored.
 * Same errors as dg_call and dg_call_fill.
 */
uint32_t dg_key_hash(const void *key, size_t len);
int dg_call_key(struct dg_flow *f, int conn, uint16_t fn, uint32_t key,
		const void *req, size_t len, uint32_t *rpc_id);

struct dg_completion {
	uint32_t rpc_id;
	uint32_t conn;
	uint16_t fn;
	int status;	  /* 0, or enum dg_status / an application status */
	const void *data; /* valid until the next dg_poll() on this flow */
	uint32_t len;
};

/*
 *   int dg_poll(struct dg_flow *f, struct dg_completion *c, int max);
 *
 * returns up to max completions (0 when none), never blocks. Inline
 * (dagger/flow.h), like dg_call.
 */

/*
 * Writing a request straight into its TX frames (no intermediate buffer).
 * dg_call_fill() reserves the frames for exactly len payload bytes and
 * calls fill(arg, w) once; fill writes the payload with dg_writer_put()
 * (which scatters it over the frames' payloads: 32 bytes in the first,
 * 56 in each further one) or
 * dg_writer_room(), and returns 0. The frames are published only after
 * fill returned 0 and wrote exactly len bytes: otherwise nothing is sent
 * and dg_call_fill() returns fill's error, or -EPROTO for a length
 * mismatch. Same errors as dg_call() otherwise.
 */
struct dg_writer {
	struct dg_frame *ring;
	uint32_t mask;
	uint32_t first; /* ring position of the message's first frame */
	uint32_t pos;	/* ring position of the frame being written */
	uint32_t off;	/* bytes written into that frame (or into buf) */
	uint32_t left;	/* bytes still expected */
	int overrun;	/* set when the writer offered more than len */
	/* A large message: its payload buffer, written in one piece. */
	uint8_t *buf;
};

typedef int (*dg_fill_fn)(void *arg, struct dg_writer *w);

int dg_call_fill(struct dg_flow *f, int conn, uint16_t fn, size_t len,
		 dg_fill_fn fill, void *arg, uint32_t *rpc_id);
/* dg_call_fill with a load-balancing key (see dg_call_key). */
int dg_call_fill_key(struct dg_flow *f, int conn, uint16_t fn, uint32_t key,
		     size_t len, dg_fill_fn fill, void *arg, uint32_t *rpc_id);
/* Appends n bytes to the message; bytes past len set w->overrun. */
void dg_writer_put(struct dg_writer *w, const void *p, size_t n);
/*
 * n contiguous bytes of the message, when they fit in the current frame:
 * the caller writes them there. NULL (nothing consumed) otherwise.
 */
void *dg_writer_room(struct dg_writer *w, size_t n);

/*
 * Polls until the completion of rpc_id arrives and returns 0 with it in
 * *c (data valid until the next dg_poll), or -ETIMEDOUT / -ENOTCONN.
 * Other completions that arrive meanwhile are dropped: for flows with no
 * other calls outstanding, like dg_call_sync(). After -ETIMEDOUT the call
 * is still outstanding: wait again, or give it up with dg_cancel().
 */
int dg_wait(struct dg_flow *f, uint32_t rpc_id, struct dg_completion *c,
	    int timeout_ms);

/*
 * Per-flow arena: n bytes, 16-byte aligned, or NULL when the arena
 * (DG_FLOW_ARENA bytes) is used up. Valid until the next dg_poll() on
 * this flow (like completion data); on a server flow, until the handler
 * of the current request has returned. For decoding messages without
 * malloc (libdagger-pb passes it to protobuf-c as its allocator). Owner
 * thread only, like every per-flow call.
 */
#define DG_FLOW_ARENA (2u * DG_MAX_MSG + 16u * DG_MAX_INLINE)
void *dg_flow_alloc(struct dg_flow *f, size_t n);

/*
 * Synchronous call built on dg_call/dg_poll. Copies the response into resp
 * (up to *resp_len; *resp_len gets the full length) and returns the status:
 * 0, a positive dg_status, or a negative errno (-ETIMEDOUT, -EMSGSIZE...).
 * The flow must have no other calls outstanding. A call that runs out of
 * time is given up (-ETIMEDOUT; see dg_cancel): its answer, if it comes
 * later, is dropped, and the flow's control calls (dg_connect, dg_close)
 * work at once.
 */
int dg_call_sync(struct dg_flow *f, int conn, uint16_t fn, const void *req,
		 size_t len, void *resp, size_t *resp_len, int timeout_ms);

/*
 * Gives up call rpc_id, whose completion the caller has not taken: when
 * its answer comes it is dropped (counted in dg_flow_stats' late), and
 * the call no longer counts as outstanding (control calls need none).
 * 0; -ENOENT when no such call is outstanding; -EALREADY when given up
 * before; -ENOSPC when 64 given-up calls still wait for their answers.
 * Owner thread. Cancelling a call whose completion was already taken
 * keeps one of the 64 places for good.
 */
int dg_cancel(struct dg_flow *f, uint32_t rpc_id);

/*
 * A large request built in place: *buf gets len bytes of this flow's TX
 * payload area. Write the request there and pass that pointer to dg_call
 * (dg_call_key, dg_call_sync) as req with at most len bytes: it travels
 * without a copy. The buffer is the caller's until that call, or until
 * another call on the flow sends a large message (the reservation is then
 * gone: passing the pointer gives -EINVAL). 0, -EAGAIN (the engine has
 * not taken earlier payloads yet: poll, retry), -EMSGSIZE (no payload
 * area, or len over DG_MAX_MSG or the area), -EINVAL.
 *
 * A large completion (or request) is read in place: its data points into
 * the flow's RX payload area until the next dg_poll (dg_serve_poll).
 * dg_call with any other buffer copies a large request into the payload
 * area (dg_flow_stats.pay_copies counts those copies).
 */
int dg_call_buf(struct dg_flow *f, size_t len, void **buf);

/* ---- server ------------------------------------------------------------- */

struct dg_request {
	uint32_t rpc_id;
	uint32_t conn;
	uint16_t fn;
	const void *data;
	uint32_t len;
	struct dg_flow *flow; /* the serving flow (for dg_flow_alloc) */
};

struct dg_response {
	void *data;   /* buffer of cap bytes for the response */
	uint32_t cap; /* DG_MAX_MSG */
	uint32_t len; /* set by the handler */
};

/*
 * A large response built in place: points resp->data at len bytes of the
 * serving flow's TX payload area (resp->cap = len), which the handler
 * fills; it travels without a copy. Waits (up to 10 s) while the engine
 * has not taken earlier responses' payloads. 0, -EMSGSIZE (no payload
 * area, or len over DG_MAX_MSG or the area; also in a worker pool),
 * -EAGAIN (no room in time), -EPERM. resp->data stays as it was on
 * failure. Without it, a response over the threshold is copied from
 * resp->data into the payload area.
 */
int dg_response_buf(const struct dg_request *req, struct dg_response *resp,
		    size_t len);

/*
 * A handler fills resp and returns 0, or a status >= DG_ST_APP_BASE that
 * travels back to the caller (with whatever resp holds). DG_ST_BAD_FRAME
 * (the request did not decode) and DG_ST_TOO_BIG (the response does not
 * fit) travel back too; any other value is answered DG_ST_BAD_FRAME.
 */
typedef int (*dg_handler_fn)(void *arg, const struct dg_request *req,
			     struct dg_response *resp);

struct dg_handler {
	uint16_t fn;
	dg_handler_fn handler;
};

struct dg_service_def {
	const char *name;
	const struct dg_handler *handlers;
	uint32_t nhandlers;
	void *arg;
	uint8_t lb; /* enum dg_lb_policy */
	/*
	 * Who may serve the service beside the tenant that registered it
	 * first (while any of its flows serve it): that tenant's other flows,
	 * tenants with its identity (in the engine's process; shared-memory
	 * tenants of the same user) and, from anywhere (RDMA tenants have no
	 * identity), registrations that carry the same non-zero secret. Any
	 * other REGISTER gets -EACCES (DG_ST_DENIED). 0 takes
	 * $DG_SERVICE_SECRET (a number, as strtoull base 0 reads it) if set;
	 * 0 there too: no secret, no one else may join.
	 */
	uint64_t secret;
};

/*
 * Registers this flow as a server flow of def->name at the engine. Callers
 * may reach the service as soon as the engine has registered it, before
 * this returns: requests that arrive while it waits for the engine's reply
 * are served (def's handlers run on this thread) rather than dropped.
 */
int dg_serve(struct dg_flow *f, const struct dg_service_def *def,
	     int timeout_ms);
/*
 * Handles up to max requests waiting on this flow; returns how many.
 * Unknown function ids are answered with DG_ST_NO_FUNCTION.
 */
int dg_serve_poll(struct dg_flow *f, int max);

/* Dispatch threads: flows [first, first + n) each get a thread that
 * registers def and serves until dg_server_stop(). */
struct dg_server;
int dg_server_start(struct dg_host *h, const struct dg_service_def *def,
		    uint32_t first_flow, uint32_t nthreads,
		    struct dg_server **out);
void dg_server_stop(struct dg_server *s);

/* ---- interface modes and sleeping -------------------------------------- */

/*
 * Switches flow f to mode (enum dg_mode: DG_MODE_POLL, DG_MODE_DOORBELL,
 * DG_MODE_PUSH) while it runs: calls made before and after are all
 * delivered once. Owner thread; no call may be outstanding (-EBUSY).
 * Shared-memory flows are polled in place whatever the mode (0).
 */
int dg_flow_set_mode(struct dg_flow *f, int mode, int timeout_ms);
int dg_flow_mode(const struct dg_flow *f);

/*
 * Putting a flow into the application's own event loop: dg_flow_fd() is
 * readable once the engine has delivered to the flow after dg_flow_arm()
 * returned 0 (which marks the flow asleep where the engine sees it;
 * -EAGAIN: something is there already, poll instead). Poll the flow when
 * it is readable; dg_flow_disarm() when giving up the wait. An RDMA
 * host's flow fds also become readable when the engine's connection is
 * gone (dg_host_check() says so then).
 */
int dg_flow_fd(struct dg_flow *f);
int dg_flow_arm(struct dg_flow *f);
void dg_flow_disarm(struct dg_flow *f);
/*
 * An application's own poll loop waits as the library's threads do: call
 * dg_flow_idle() after each poll that found nothing, with *idle_since_ns
 * set to 0 after each one that found something. It spins for the flow's
 * spin_us (returning 0 at once), then looks on for its yield_us giving the
 * CPU away (sched_yield) at each look, then sleeps until the engine
 * delivers to the flow, also_fd (if >= 0) is readable or timeout_ms pass
 * (-1: none), returning 1 after a sleep. own_calls: the thread waits for
 * answers to its own calls (it always takes the yield phase); 0: it waits
 * for requests (of those, one thread per host takes the yield phase at a
 * time, and one whose last phase brought no request skips it for its
 * next 1, 2, 4 ... 64 idle spells). Negative errno on failure.
 */
int dg_flow_idle(struct dg_flow *f, uint64_t *idle_since_ns, int timeout_ms,
		 int also_fd, int own_calls);
/* Per flow: the spin before sleeping, or never sleep (busy_poll). */
void dg_flow_set_spin(struct dg_flow *f, uint32_t spin_us, int busy_poll);
/*
 * The threading model of a server. workers == 0: dispatch threads, each
 * running the handlers of the requests on its flow itself, in order (as
 * dg_server_start). workers > 0: a worker pool: the dispatch threads
 * only move requests (each copied out of the RX ring at once) to
 * `workers` worker threads shared by all of them, and write the
 * responses as the workers finish, in any order (each carries its rpc
 * id). A handler that waits or computes long then holds up one worker,
 * not a flow and every request behind it.
 *
 * In a worker, req->flow is the worker's own: dg_flow_alloc() works on
 * it (libdagger-pb's stubs decode into it), calls on it fail
 * (-EMSGSIZE): make downstream calls on flows of your own.
 */
struct dg_server_opts {
	uint32_t first_flow; /* dispatch threads on flows [first, first+n) */
	uint32_t nthreads;   /* n, 1..DG_MAX_FLOWS */
	uint32_t workers;    /* 0: none; else 1..1024 worker threads */
	uint32_t queue;	     /* requests per dispatch thread at the workers
				(0: 256; at most 65535) */
};

int dg_server_start_opts(struct dg_host *h, const struct dg_service_def *def,
			 const struct dg_server_opts *o,
			 struct dg_server **out);

/* ---- statistics ------------------------------------------------------- */

struct dg_flow_stats {
	uint64_t calls, completions, eagain, requests, responses;
	uint64_t bad_frames; /* RX frames that failed validation */
	uint64_t doorbells;  /* RDMA doorbell and push modes: posted */
	uint64_t kicks;	     /* a sleeping shared-memory engine woken */
	uint64_t sleeps;     /* times this flow's thread slept */
	/*
	 * Sleeps that ran to their timeout with a frame waiting (the
	 * engine's wake-up did not come): 0 unless the protocol is broken.
	 * A thread sleeps until it is woken or its caller's deadline, never
	 * for a fixed while.
	 */
	uint64_t missed_wakes;
	/*
	 * Calls given up (dg_wait or dg_call_sync ran out of time, dg_cancel)
	 * and answers that came for them later (dropped).
	 */
	uint64_t abandoned, late;
	/*
	 * Waiting for requests (dg_flow_idle): yield phases this flow's
	 * thread took (the host's one at a time), and of those, ones it
	 * ended early because another thread of the host took a request or
	 * was woken for one.
	 */
	uint64_t yield_phases, yield_given_way;
	/* Large messages: sent (requests and responses), of those copied
	 * into the payload area by the library, and received. */
	uint64_t pay_sent, pay_copies, pay_recv;
	/*
	 * TX payload bytes the engine has not released yet (as of the
	 * call): 0 once everything sent was taken.
	 */
	uint64_t pay_pending;
};

void dg_flow_stats(const struct dg_flow *f, struct dg_flow_stats *s);
const char *dg_status_str(int status);

#ifdef __cplusplus
}
#endif

/* dg_call and dg_poll, inline. */
#include "dagger/flow.h"

#endif /* DAGGER_DAGGER_H */
