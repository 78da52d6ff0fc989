// SPDX-License-Identifier: MIT
/*
 * Links the generated stubs, libdagger-pb and libdagger from an installed
 * tree and runs what needs no engine: the function id, message encoding,
 * and attach's argument check.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "greeter.dg.h"

static int say_hello(void *arg, struct dg_flow *f,
		     const Hello__HelloRequest *req, Hello__HelloReply *resp)
{
	(void)arg;
	(void)f;
	resp->text = req->name;
	return 0;
}

int main(void)
{
	static const struct hello__greeter__handlers h = {.say_hello =
								  say_hello};
	static struct hello__greeter__server srv;
	Hello__HelloRequest req = HELLO__HELLO_REQUEST__INIT;
	const struct dg_service_def *def;
	struct dg_host_opts o = {0};
	struct dg_host *host;
	uint8_t buf[64];

	req.name = "outside";
	def = hello__greeter__service(&srv, &h, NULL, DG_LB_ROUND_ROBIN);
	if (strcmp(def->name, "hello.Greeter") || def->nhandlers != 1 ||
	    def->handlers[0].fn != HELLO__GREETER__SAY_HELLO__FN)
		return 1;
	if (hello__hello_request__pack(&req, buf) != 9)
		return 1;
	/* Neither an engine address nor a local engine: -EINVAL. */
	if (dg_host_attach(&o, &host) != -EINVAL)
		return 1;
	printf("greeter: hello.Greeter/SayHello = 0x%04x\n",
	       HELLO__GREETER__SAY_HELLO__FN);
	return 0;
}
