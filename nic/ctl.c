// SPDX-License-Identifier: MIT
/*
 * ctl.c - the engine's control socket (dagger-ctl): a unix stream socket
 * on which each connection sends requests, one JSON object per line, and
 * gets one JSON line back per request (ctl_cmd.c answers them).
 *
 * All of it runs on the loop thread and never blocks the loop: the
 * listening socket and every connection are non-blocking and watched by
 * one epoll instance, whose descriptor the loop looks at once a
 * millisecond (nic_ctl_tick) and sleeps on with the rest (nic_ctl_fd). A
 * connection's bytes collect in a buffer until a newline (a partial line
 * waits); a line longer than CTL_LINE_MAX is answered with an error and skipped
 * up to its end. While an answer is not yet written out, the connection's
 * further requests wait (the kernel's socket buffer holds them), so a
 * client that does not read cannot make the engine hold more than one
 * answer for it. A connection that sends no whole request for
 * CTL_IDLE_MS, or takes none of its answer for CTL_STALL_MS, is closed;
 * past CTL_CLIENTS connections a new one is told so and closed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dg_json.h"
#include "engine_impl.h"

#define CTL_CLIENTS  16
#define CTL_LINE_MAX 4096u
#define CTL_OUT_MAX  (64u << 20) /* one answer; stats of 64 x 64 flows fit */
#define CTL_IDLE_MS  60000u
#define CTL_STALL_MS 10000u
#define CTL_LISTENER CTL_CLIENTS /* epoll data of the listening socket */

struct ctl_client {
	int fd; /* -1: free */
	char in[CTL_LINE_MAX];
	size_t in_len;
	bool discard; /* inside an oversized line: drop up to its newline */
	bool eof;     /* the peer shut its side: close once answered */
	struct dg_buf out;
	size_t out_off;
	uint64_t last_ms; /* last progress (a request, or bytes written) */
};

struct nic_ctl {
	int lfd, efd;
	uint64_t last_ns; /* the last nic_ctl_poll */
	char path[108];
	struct ctl_client c[CTL_CLIENTS];
};

int dg_nic_ctl_listen(struct dg_nic *n, const char *path)
{
	return n->ctl ? -EALREADY : nic_ctl_listen(n, path);
}

const char *dg_nic_ctl_path(const struct dg_nic *n)
{
	return n->ctl ? n->ctl->path : NULL;
}

int nic_ctl_fd(const struct dg_nic *n)
{
	return n->ctl ? n->ctl->efd : -1;
}

int nic_ctl_listen(struct dg_nic *n, const char *path)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = CTL_LISTENER};
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	struct nic_ctl *c;
	int rc, i;

	if (!path || !path[0] || strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	strcpy(a.sun_path, path);
	for (i = 0; i < CTL_CLIENTS; i++) {
		c->c[i].fd = -1;
		dg_buf_init(&c->c[i].out, CTL_OUT_MAX);
	}
	c->efd = epoll_create1(EPOLL_CLOEXEC);
	c->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->efd < 0 || c->lfd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = bind(c->lfd, (struct sockaddr *)&a, sizeof(a)) ? -errno : 0;
	if (rc == -EADDRINUSE) {
		/* A socket file: another engine's, or one left by a crash. */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live = probe >= 0 && connect(probe, (struct sockaddr *)&a,
						  sizeof(a)) == 0;

		if (probe >= 0)
			close(probe);
		if (live)
			goto fail;
		unlink(path);
		rc = bind(c->lfd, (struct sockaddr *)&a, sizeof(a)) ? -errno
								    : 0;
	}
	if (rc)
		goto fail;
	/* The owner and its group: the directory decides the rest. */
	if (chmod(path, 0660) || listen(c->lfd, 16) ||
	    epoll_ctl(c->efd, EPOLL_CTL_ADD, c->lfd, &ev)) {
		rc = -errno;
		unlink(path);
		goto fail;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	n->ctl = c;
	return 0;
fail:
	if (c->lfd >= 0)
		close(c->lfd);
	if (c->efd >= 0)
		close(c->efd);
	for (i = 0; i < CTL_CLIENTS; i++)
		dg_buf_free(&c->c[i].out);
	free(c);
	return rc;
}

static void client_close(struct nic_ctl *c, struct ctl_client *k)
{
	epoll_ctl(c->efd, EPOLL_CTL_DEL, k->fd, NULL);
	close(k->fd);
	k->fd = -1;
	k->in_len = 0;
	k->discard = k->eof = false;
	k->out_off = 0;
	/* A large answer's memory goes back; a small buffer is kept. */
	if (k->out.cap > 65536) {
		dg_buf_free(&k->out);
		dg_buf_init(&k->out, CTL_OUT_MAX);
	} else {
		dg_buf_reset(&k->out);
	}
}

void nic_ctl_close(struct dg_nic *n)
{
	struct nic_ctl *c = n->ctl;
	int i;

	if (!c)
		return;
	for (i = 0; i < CTL_CLIENTS; i++) {
		if (c->c[i].fd >= 0)
			client_close(c, &c->c[i]);
		dg_buf_free(&c->c[i].out);
	}
	close(c->lfd);
	close(c->efd);
	unlink(c->path);
	free(c);
	n->ctl = NULL;
}

/* Watch k for input, or (an answer pending) for room to write. */
static void client_watch(struct nic_ctl *c, struct ctl_client *k)
{
	struct epoll_event ev = {.events = k->out.len > k->out_off ? EPOLLOUT
								   : EPOLLIN,
				 .data.u32 = (uint32_t)(k - c->c)};

	epoll_ctl(c->efd, EPOLL_CTL_MOD, k->fd, &ev);
}

static void accept_all(struct dg_nic *n, uint64_t now)
{
	static const char full[] =
		"{\"v\":1,\"ok\":false,\"error\":\"too many control "
		"connections (16): try again later\"}\n";
	struct nic_ctl *c = n->ctl;
	int fd, i;

	while ((fd = accept4(c->lfd, NULL, NULL,
			     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		struct epoll_event ev = {.events = EPOLLIN};

		for (i = 0; i < CTL_CLIENTS && c->c[i].fd >= 0; i++)
			;
		if (i == CTL_CLIENTS) {
			/* A fresh socket has room for one short line. */
			(void)send(fd, full, sizeof(full) - 1,
				   MSG_DONTWAIT | MSG_NOSIGNAL);
			close(fd);
			continue;
		}
		ev.data.u32 = (uint32_t)i;
		if (epoll_ctl(c->efd, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
			continue;
		}
		c->c[i].fd = fd;
		c->c[i].last_ms = now;
	}
}

/* Writes what it can of k's answer; false on an error (close it). */
static bool client_flush(struct ctl_client *k, uint64_t now)
{
	while (k->out_off < k->out.len) {
		ssize_t w = send(k->fd, k->out.p + k->out_off,
				 k->out.len - k->out_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (w < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ||
			       errno == EINTR;
		k->out_off += (size_t)w;
		k->last_ms = now;
	}
	dg_buf_reset(&k->out);
	k->out_off = 0;
	return true;
}

/* Answers one whole line buffered (or refuses an oversized one). */
static bool client_line(struct dg_nic *n, struct ctl_client *k, uint64_t now)
{
	static const char big[] = "{\"v\":1,\"ok\":false,\"error\":\"request "
				  "line longer than 4096 bytes: skipped to "
				  "its end\"}\n";
	char *nl = memchr(k->in, '\n', k->in_len);
	size_t len;

	if (!nl) {
		if (k->in_len < CTL_LINE_MAX)
			return false; /* a partial line waits */
		dg_buf_add(&k->out, big, sizeof(big) - 1);
		k->in_len = 0;
		k->discard = true;
		return true;
	}
	len = (size_t)(nl - k->in);
	if (len && k->in[len - 1] == '\r')
		len--; /* CRLF from hand-typed tools */
	nic_ctl_handle(n, k->in, len, &k->out);
	k->last_ms = now;
	len = (size_t)(nl - k->in) + 1;
	memmove(k->in, k->in + len, k->in_len - len);
	k->in_len -= len;
	return true;
}

static void client_io(struct dg_nic *n, struct ctl_client *k, uint64_t now)
{
	struct nic_ctl *c = n->ctl;

	for (;;) {
		ssize_t r;

		if (k->out.len > k->out_off) {
			if (!client_flush(k, now)) {
				client_close(c, k);
				return;
			}
			if (k->out.len > k->out_off)
				break; /* no room: wait for EPOLLOUT */
		}
		if (client_line(n, k, now))
			continue;
		if (k->eof) {
			client_close(c, k);
			return;
		}
		r = recv(k->fd, k->in + k->in_len, CTL_LINE_MAX - k->in_len,
			 MSG_DONTWAIT);
		if (r < 0 &&
		    (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			break;
		if (r <= 0) {
			k->eof = true; /* closed: answer what came, close */
			continue;
		}
		if (k->discard) {
			char *p = k->in + k->in_len;
			char *nl = memchr(p, '\n', (size_t)r);

			if (!nl)
				continue; /* still inside the long line */
			r -= nl + 1 - p;
			memmove(p, nl + 1, (size_t)r);
			k->discard = false;
		}
		k->in_len += (size_t)r;
	}
	client_watch(c, k);
}

/*
 * From the loop, once in 64 iterations: a clock read, and the socket's
 * epoll descriptor looked at once a millisecond at most. So a request
 * waits about a millisecond however long the iterations take (under an
 * RDMA load, or in an emulated machine, 1024 iterations can take
 * seconds), and an idle look costs the loop one clock read per 64
 * iterations. A sleeping loop is woken by the descriptor itself.
 */
void nic_ctl_tick(struct dg_nic *n)
{
	uint64_t now = mono_ns();

	if (now - n->ctl->last_ns >= 1000000u)
		nic_ctl_poll(n);
}

void nic_ctl_poll(struct dg_nic *n)
{
	struct nic_ctl *c = n->ctl;
	struct epoll_event ev[CTL_CLIENTS + 1];
	uint64_t now = 0;
	int k, i;

	c->last_ns = mono_ns();
	k = epoll_wait(c->efd, ev, CTL_CLIENTS + 1, 0);
	for (i = 0; i < k; i++) {
		uint32_t x = ev[i].data.u32;

		if (!now)
			now = mono_ns() / 1000000u;
		if (x == CTL_LISTENER)
			accept_all(n, now);
		else if (x < CTL_CLIENTS && c->c[x].fd >= 0)
			client_io(n, &c->c[x], now);
	}
	/* Connections that make no progress give their place up. */
	for (i = 0; i < CTL_CLIENTS; i++) {
		struct ctl_client *cl = &c->c[i];
		uint64_t lim;

		if (cl->fd < 0)
			continue;
		if (!now)
			now = mono_ns() / 1000000u;
		lim = cl->out.len > cl->out_off ? CTL_STALL_MS : CTL_IDLE_MS;
		if (now - cl->last_ms > lim)
			client_close(c, cl);
	}
}
