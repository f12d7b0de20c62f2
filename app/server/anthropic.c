/* Anthropic API: POST /v1/messages (see api.h). Placeholder until written. */
#include "server/api.h"

#include <stdlib.h>
#include <string.h>

int anthropic_parse(server *srv, cJSON *body, api_request *req, api_error *err) {
    (void)srv, (void)body, (void)req;
    return api_fail(err, 501, "not yet");
}
char *anthropic_response(api_request *req) { (void)req; return NULL; }
void anthropic_stream(api_request *req, strbuf *out) { (void)out; req->finished = 1; }
char *anthropic_error_body(const api_error *err) {
    cJSON *r = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(r, "error");
    cJSON_AddStringToObject(r, "type", "error");
    cJSON_AddStringToObject(e, "type", err->type ? err->type : "invalid_request_error");
    cJSON_AddStringToObject(e, "message", err->message);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}
