// SPDX-License-Identifier: MIT
/*
 * Links the generated stubs, libdagger-pb, libdagger-wkt and libdagger from
 * an installed tree and runs what needs no engine: the function ids, the
 * service table, message encoding with well-known types (their code from
 * libdagger-wkt) and a proto3 optional field, and attach's argument check.
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

static int ping(void *arg, struct dg_flow *f,
		const Google__Protobuf__Empty *req,
		Google__Protobuf__Timestamp *resp)
{
	(void)arg;
	(void)f;
	(void)req;
	resp->seconds = 1;
	return 0;
}

int main(void)
{
	static const struct hello__greeter__handlers h = {
		.say_hello = say_hello, .ping = ping};
	static struct hello__greeter__server srv;
	Hello__HelloRequest req = HELLO__HELLO_REQUEST__INIT, *back;
	Google__Protobuf__Timestamp sent = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
	Google__Protobuf__Int32Value retries =
		GOOGLE__PROTOBUF__INT32_VALUE__INIT;
	Google__Protobuf__Any extra = GOOGLE__PROTOBUF__ANY__INIT;
	Google__Protobuf__Struct meta = GOOGLE__PROTOBUF__STRUCT__INIT;
	Google__Protobuf__Struct__FieldsEntry
		e = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT,
		*ep[1] = {&e};
	Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
	const struct dg_service_def *def;
	struct dg_host_opts o = {0};
	struct dg_host *host;
	uint8_t buf[256], inner[16];
	size_t n;

	req.name = "outside";
	def = hello__greeter__service(&srv, &h, NULL, DG_LB_ROUND_ROBIN);
	if (strcmp(def->name, "hello.Greeter") || def->nhandlers != 2 ||
	    def->handlers[0].fn != HELLO__GREETER__SAY_HELLO__FN ||
	    def->handlers[1].fn != HELLO__GREETER__PING__FN)
		return 1;
	if (hello__hello_request__pack(&req, buf) != 9)
		return 1;

	sent.seconds = 1700000000;
	ttl.seconds = 30;
	retries.value = 3;
	extra.type_url = "type.googleapis.com/google.protobuf.Duration";
	extra.value.data = inner;
	extra.value.len = google__protobuf__duration__pack(&ttl, inner);
	v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
	v.string_value = "v";
	e.key = "k";
	e.value = &v;
	meta.n_fields = 1;
	meta.fields = ep;
	req.sent = &sent;
	req.ttl = &ttl;
	req.retries = &retries;
	req.extra = &extra;
	req.meta = &meta;
	req._priority_case = HELLO__HELLO_REQUEST___PRIORITY_PRIORITY;
	req.priority = 0;
	n = hello__hello_request__pack(&req, buf);
	back = hello__hello_request__unpack(NULL, n, buf);
	if (!back || back->sent->seconds != 1700000000 ||
	    back->ttl->seconds != 30 || back->retries->value != 3 ||
	    strcmp(back->meta->fields[0]->value->string_value, "v") ||
	    back->extra->value.len != extra.value.len ||
	    back->_priority_case != HELLO__HELLO_REQUEST___PRIORITY_PRIORITY)
		return 1;
	hello__hello_request__free_unpacked(back, NULL);

	/* Neither an engine address nor a local engine: -EINVAL. */
	if (dg_host_attach(&o, &host) != -EINVAL)
		return 1;
	printf("greeter: hello.Greeter/SayHello = 0x%04x, %zu-byte request\n",
	       HELLO__GREETER__SAY_HELLO__FN, n);
	return 0;
}
