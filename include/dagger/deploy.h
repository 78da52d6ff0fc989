/* SPDX-License-Identifier: MIT */
/*
 * deploy.h - the deployment description: one YAML file naming the
 * machines, the NIC engines on them, the services and the tenants
 * (applications). dagger-nic reads its engine's settings from it
 * (--config FILE --engine NAME); dagger-launch starts, stops and reports
 * everything it names. docs/DEPLOY.md is the reference of the format.
 *
 * dg_deploy_load() rejects a bad file with "FILE:LINE: reason" in err and
 * -EINVAL (-errno when the file cannot be read); nothing it accepts needs
 * checking again by its users.
 */
#ifndef DG_DEPLOY_H
#define DG_DEPLOY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DG_DEPLOY_NAME_MAX     48 /* names of machines, engines, ... */
#define DG_DEPLOY_DEFAULT_PORT 7471

enum dg_deploy_app {
	DG_APP_COMMAND = 0, /* tenant runs its own command: */
	DG_APP_ECHO_SERVER, /* dagger-echo server (service "echo") */
	DG_APP_ECHO_CLIENT, /* dagger-echo client */
	DG_APP_KVS_SERVER,  /* dagger-kvs server (service "kvs.Kvs") */
	DG_APP_KVS_CLIENT,  /* dagger-kvs client */
};

struct dg_deploy_machine {
	char *name;
	char *host;	   /* ssh destination; NULL: the local machine */
	char *rdma_addr;   /* the RDMA device's IP address */
	char *rdma_device; /* e.g. "mlx5_0", "rxe0"; NULL: not checked */
	int gid_index;	   /* -1: not given */
	char *bin_dir;	   /* NULL: the description's bin_dir */
	char *launcher;	   /* dagger-launch on that machine; NULL: default */
	int line;
};

struct dg_deploy_engine {
	char *name;
	size_t machine; /* index into machines */
	char *listen;	/* address to listen on (default: rdma_addr) */
	uint16_t port;
	uint32_t id;
	uint32_t batch;		  /* 0: the engine's default */
	int cpu;		  /* CPU to pin the engine to; -1: none */
	uint32_t spin_us;	  /* 0: the engine's default */
	uint32_t idle_us;	  /* 0: the engine's default */
	uint32_t peer_timeout_ms; /* 0: the engine's default (3000) */
	uint32_t poll_max_us;	  /* 0: the engine's default (1000) */
	uint32_t hold_us;	  /* 0: the engine's default (100000) */
	char *shm;	/* unix socket for shared-memory tenants; NULL: none */
	char *ctl;	/* control socket (dagger-ctl); NULL: the default */
	bool busy_poll; /* never sleep */
	bool verbose;
	int line;
};

struct dg_deploy_service {
	char *name;
	uint8_t policy;	  /* enum dg_lb_policy */
	bool policy_set;  /* given in the file (the engine applies it) */
	uint32_t threads; /* server threads (flows) */
	uint32_t workers; /* worker threads behind them; 0: none */
	int line;
};

struct dg_deploy_tenant {
	char *name;
	size_t machine;
	size_t engine;
	long service;	    /* index into services; -1: none listed */
	char *service_name; /* NULL: none */
	enum dg_deploy_app app;
	char *shell; /* command: as one string, run by /bin/sh -c */
	char **argv; /* command: as a list, or the app's extra args: */
	size_t argc;
	bool oneshot;	    /* up waits for it to finish (clients) */
	char *ready;	    /* up waits for this text in its log; NULL: none */
	uint32_t timeout_s; /* oneshot: longest run; 0: unbounded */
	/* Host settings, exported as DG_MODE, DG_SPIN_US, DG_BUSY_POLL. */
	int mode;	  /* enum dg_mode; 0: the library's default */
	uint32_t spin_us; /* 0: the library's default */
	bool busy_poll;
	int line;
};

struct dg_deploy {
	char *path; /* the name used in messages */
	char *name;
	char **ssh; /* ssh command, NULL-terminated (default: "ssh") */
	char *run_dir;
	char *bin_dir;
	uint32_t start_timeout_s;
	uint32_t stop_timeout_s;
	struct dg_deploy_machine *machines;
	size_t nmachines;
	struct dg_deploy_engine *engines;
	size_t nengines;
	struct dg_deploy_service *services;
	size_t nservices;
	struct dg_deploy_tenant *tenants;
	size_t ntenants;
};

/*
 * Parses the description in file path ("-": standard input). label names
 * it in messages (NULL: path). On error fills err (always NUL-terminated)
 * and returns a negative errno.
 */
int dg_deploy_load(const char *path, const char *label, struct dg_deploy **out,
		   char *err, size_t errlen);
/* The same from a buffer. */
int dg_deploy_parse(const char *text, size_t len, const char *label,
		    struct dg_deploy **out, char *err, size_t errlen);
void dg_deploy_free(struct dg_deploy *d);

/* Index of the named object, or -1. */
long dg_deploy_find_machine(const struct dg_deploy *d, const char *name);
long dg_deploy_find_engine(const struct dg_deploy *d, const char *name);
long dg_deploy_find_service(const struct dg_deploy *d, const char *name);
long dg_deploy_find_tenant(const struct dg_deploy *d, const char *name);

/* "rr", "static", "random", "key"; parse returns -EINVAL otherwise. */
const char *dg_deploy_policy_name(uint8_t policy);
int dg_deploy_policy_parse(const char *s);
const char *dg_deploy_app_name(enum dg_deploy_app app);

/*
 * The address a tenant connects to for engine e: its listen address, or
 * its machine's rdma_addr when it listens on a wildcard address.
 */
const char *dg_deploy_engine_addr(const struct dg_deploy *d,
				  const struct dg_deploy_engine *e);

/*
 * The tenant's argument vector, with its placeholders ({engine},
 * {engine_addr}, {engine_port}, {remote}, {service}, {threads},
 * {policy}, {machine}, {name}) filled in, and the program resolved
 * against bin_dir for the app kinds. NULL-terminated; free with
 * dg_deploy_argv_free(). Returns a negative errno on failure.
 */
int dg_deploy_tenant_argv(const struct dg_deploy *d, size_t tenant,
			  char ***out);
void dg_deploy_argv_free(char **argv);

/* bin_dir for programs on machine m (machine's, else the file's; NULL). */
const char *dg_deploy_bin_dir(const struct dg_deploy *d, size_t m);

/*
 * The default control socket of an engine called name (dagger-nic,
 * dagger-ctl): RUN/NAME.ctl, RUN being /run/dagger when it exists or
 * (create) can be made, else $XDG_RUNTIME_DIR/dagger, else
 * /tmp/dagger-UID. 0, or a negative errno (-ENAMETOOLONG; with create,
 * the directory could not be made).
 */
int dg_ctl_default_path(const char *name, bool create, char *buf, size_t len);
/* Engine e's control socket: its ctl key, or the default for its name. */
int dg_deploy_ctl_path(const struct dg_deploy_engine *e, bool create, char *buf,
		       size_t len);

#endif /* DG_DEPLOY_H */
