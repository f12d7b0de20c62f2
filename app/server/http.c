/* The HTTP side of flashmoe serve (libmicrohttpd, a thread per connection):
 * routing, authentication, bounded request bodies, error bodies in each API's
 * shape, whole and streamed (server-sent events) responses, and noticing a
 * client that leaves so its generation stops. */
#include "server/api.h"
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static atomic_int server_stopping;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A connection's request: its body as it arrives. */
typedef struct {
    strbuf body;
    int too_large;
    double t0;
} request_ctx;

/* The peer closed its end (or the server is stopping). */
static int client_gone(int fd) {
    if (atomic_load(&server_stopping)) return 1;
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static int connection_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* body: malloc'd (cJSON's printers allocate with malloc: flashmoe never sets other hooks); MHD frees it. */
static enum MHD_Result send_body(struct MHD_Connection *c, int status, char *body, const char *type) {
    if (!body) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static char *json_text(cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static enum MHD_Result send_error(struct MHD_Connection *c, api_kind kind, const api_error *err) {
    char *body = kind == API_MESSAGES ? anthropic_error_body(err) : openai_error_body(err);
    return send_body(c, err->status, body, "application/json");
}

/* ---- streaming ---------------------------------------------------------- */

typedef struct {
    api_request req;
    strbuf pending;
    int fd;
    double last_write;
} stream_ctx;

static void stream_error_event(api_request *req, strbuf *out) {
    api_error e = {.status = req->job->status, .type = "api_error"};
    snprintf(e.message, sizeof e.message, "%s", req->job->error);
    char *body = req->kind == API_MESSAGES ? anthropic_error_body(&e) : openai_error_body(&e);
    if (req->kind == API_MESSAGES) sb_printf(out, "event: error\ndata: %s\n\n", body ? body : "{}");
    else sb_printf(out, "data: %s\n\n", body ? body : "{}");
    free(body);
    req->finished = 1;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *s = cls;
    job *j = s->req.job;
    while (!s->pending.len) {
        if (s->req.finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (client_gone(s->fd)) {
            atomic_store(&j->cancel, 1);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        pthread_mutex_lock(&j->mu);
        if (j->done && j->status) {
            if (!s->req.started && s->req.kind == API_CHAT) openai_stream(&s->req, &s->pending);
            s->req.finished = 0;
            stream_error_event(&s->req, &s->pending);
        } else if (s->req.kind == API_MESSAGES) {
            anthropic_stream(&s->req, &s->pending);
        } else {
            openai_stream(&s->req, &s->pending);
        }
        if (!s->pending.len && !s->req.finished) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 100000000;
            if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&j->cv, &j->mu, &until);
        }
        pthread_mutex_unlock(&j->mu);
        if (s->pending.failed) return MHD_CONTENT_READER_END_WITH_ERROR;
        /* A comment now and then keeps proxies and clients from timing out during a long prefill. */
        if (!s->pending.len && now_s() - s->last_write > 15) sb_puts(&s->pending, ": keep-alive\n\n");
    }
    size_t n = s->pending.len < max ? s->pending.len : max;
    memcpy(buf, s->pending.data, n);
    sb_consume(&s->pending, n);
    s->last_write = now_s();
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_ctx *s = cls;
    if (!s->req.finished) atomic_store(&s->req.job->cancel, 1); /* the client left mid-answer */
    job_unref(s->req.job);
    sb_free(&s->pending);
    free(s);
}

/* ---- generation requests ------------------------------------------------ */

static enum MHD_Result generate(server *srv, struct MHD_Connection *c, api_kind kind, const request_ctx *rc) {
    api_error err = {0};
    cJSON *body = api_parse_body(rc->body.data ? rc->body.data : "", rc->body.len, &err);
    if (!body) return send_error(c, kind, &err);
    stream_ctx *s = calloc(1, sizeof *s);
    job *j = job_new();
    if (!s || !j) {
        free(s);
        job_unref(j);
        cJSON_Delete(body);
        api_fail(&err, 500, "out of memory");
        return send_error(c, kind, &err);
    }
    api_request *req = &s->req;
    req->kind = kind;
    req->job = j;
    req->block = -1;
    req->created = (long)time(NULL);
    static atomic_ulong counter;
    unsigned long n = atomic_fetch_add(&counter, 1) + 1;
    snprintf(req->id, sizeof req->id, "%s%lx%06lx", kind == API_MESSAGES ? "msg_" : kind == API_CHAT ? "chatcmpl-" : "cmpl-",
             (unsigned long)req->created, n & 0xffffff);
    int rc_parse = kind == API_CHAT ? openai_chat_parse(srv, body, req, &err)
                   : kind == API_COMPLETIONS ? openai_completions_parse(srv, body, req, &err)
                                             : anthropic_parse(srv, body, req, &err);
    cJSON_Delete(body);
    if (!rc_parse && atomic_load(&server_stopping)) {
        api_fail(&err, 503, "the server is stopping");
        rc_parse = -1;
    }
    if (!rc_parse && worker_submit(srv->w, j)) {
        api_fail(&err, 429, "the server is busy: %d requests are waiting; retry later", srv->cfg.worker.max_queue);
        rc_parse = -1;
    }
    if (rc_parse) {
        job_unref(j);
        free(s);
        return send_error(c, kind, &err);
    }
    s->fd = connection_fd(c);
    if (req->stream) {
        s->last_write = now_s();
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free);
        if (!r) {
            stream_free(s);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ok;
    }
    /* Whole response: wait, watching for the client leaving. */
    pthread_mutex_lock(&j->mu);
    while (!j->done) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100000000;
        if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&j->cv, &j->mu, &until);
        if (!j->done && client_gone(s->fd)) {
            atomic_store(&j->cancel, 1);
            pthread_mutex_unlock(&j->mu);
            s->req.finished = 1;
            stream_free(s);
            return MHD_NO; /* nobody to answer */
        }
    }
    char *out = NULL;
    int status = 200;
    if (j->status) {
        api_fail(&err, j->status, "%s", j->error);
        out = kind == API_MESSAGES ? anthropic_error_body(&err) : openai_error_body(&err);
        status = j->status;
    } else {
        out = kind == API_MESSAGES ? anthropic_response(req) : openai_response(req);
    }
    pthread_mutex_unlock(&j->mu);
    s->req.finished = 1;
    stream_free(s);
    return send_body(c, status, out, "application/json");
}

/* ---- routing ------------------------------------------------------------ */

static int authorized(const server *srv, struct MHD_Connection *c) {
    if (!srv->cfg.api_key) return 1;
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!key && auth && !strncasecmp(auth, "Bearer ", 7)) key = auth + 7;
    if (!key) return 0;
    /* Compare without stopping at the first difference. */
    size_t a = strlen(key), b = strlen(srv->cfg.api_key);
    unsigned diff = (unsigned)(a != b);
    for (size_t i = 0; i < a; i++) diff |= (unsigned char)key[i] ^ (unsigned char)srv->cfg.api_key[i % (b ? b : 1)];
    return !diff;
}

static char *models_json(const server *srv, int one) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", srv->cfg.model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)srv->created);
    cJSON_AddStringToObject(m, "owned_by", "flashmoe");
    cJSON_AddNumberToObject(m, "context_length", srv->e->max_context);
    /* Anthropic's shape of the same (its clients list models too). */
    char when[32];
    time_t created = (time_t)srv->created;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&created));
    cJSON_AddStringToObject(m, "type", "model");
    cJSON_AddStringToObject(m, "display_name", srv->cfg.model_id);
    cJSON_AddStringToObject(m, "created_at", when);
    if (one) return json_text(m);
    cJSON *list = cJSON_CreateObject();
    cJSON_AddStringToObject(list, "object", "list");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(list, "data"), m);
    cJSON_AddFalseToObject(list, "has_more");
    cJSON_AddStringToObject(list, "first_id", srv->cfg.model_id);
    cJSON_AddStringToObject(list, "last_id", srv->cfg.model_id);
    return json_text(list);
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

static char *stats_json(server *srv) {
    worker_stats ws;
    worker_get_stats(srv->w, &ws);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "queued", ws.queued);
    cJSON_AddNumberToObject(r, "running", ws.running);
    cJSON_AddNumberToObject(r, "jobs_done", (double)ws.jobs_done);
    cJSON_AddNumberToObject(r, "jobs_cancelled", (double)ws.jobs_cancelled);
    cJSON_AddNumberToObject(r, "jobs_failed", (double)ws.jobs_failed);
    cJSON_AddNumberToObject(r, "prompt_tokens", (double)ws.prompt_tokens);
    cJSON_AddNumberToObject(r, "cached_tokens", (double)ws.cached_tokens);
    cJSON_AddNumberToObject(r, "generated_tokens", (double)ws.generated_tokens);
    cJSON *pc = cJSON_AddObjectToObject(r, "prompt_cache");
    cJSON_AddNumberToObject(pc, "entries", ws.cache.entries);
    cJSON_AddNumberToObject(pc, "bytes", (double)ws.cache.bytes);
    cJSON_AddNumberToObject(pc, "budget", (double)ws.cache.budget);
    cJSON_AddNumberToObject(pc, "stored", (double)ws.cache.stored);
    cJSON_AddNumberToObject(pc, "evicted", (double)ws.cache.evicted);
    cJSON_AddNumberToObject(pc, "restored", (double)ws.cache.restored);
    cJSON_AddNumberToObject(r, "rss_bytes", (double)rss_kb() * 1024);
    return json_text(r);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *srv = cls;
    request_ctx *rc = *con_cls;
    if (!rc) { /* headers are in; the body (if any) follows */
        if (!(rc = calloc(1, sizeof *rc))) return MHD_NO;
        rc->t0 = now_s();
        *con_cls = rc;
        return MHD_YES;
    }
    if (*upload_size) {
        if (rc->body.len + *upload_size > srv->cfg.max_body) rc->too_large = 1;
        else sb_append(&rc->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    const api_kind kind = !strcmp(url, "/v1/messages") ? API_MESSAGES
                          : !strcmp(url, "/v1/completions") ? API_COMPLETIONS : API_CHAT;
    api_error err = {0};
    const int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (get && !strcmp(url, "/health")) return send_body(c, 200, strdup("{\"status\":\"ok\"}"), "application/json");
    if (!authorized(srv, c)) {
        api_fail(&err, 401, "missing or wrong API key (send 'Authorization: Bearer KEY' or 'x-api-key: KEY')");
        return send_error(c, kind, &err);
    }
    if (rc->too_large || rc->body.failed) {
        api_fail(&err, 413, "the request body is over %zu bytes (flashmoe serve --max-body)", srv->cfg.max_body);
        return send_error(c, kind, &err);
    }
    const char *models = "/v1/models/";
    if (get && !strcmp(url, "/v1/models")) return send_body(c, 200, models_json(srv, 0), "application/json");
    if (get && !strncmp(url, models, strlen(models))) {
        if (!strcmp(url + strlen(models), srv->cfg.model_id)) return send_body(c, 200, models_json(srv, 1), "application/json");
        api_fail(&err, 404, "no model '%s' (this server has '%s')", url + strlen(models), srv->cfg.model_id);
        return send_error(c, kind, &err);
    }
    if (get && !strcmp(url, "/stats")) return send_body(c, 200, stats_json(srv), "application/json");
    const int gen = !strcmp(url, "/v1/chat/completions") || !strcmp(url, "/v1/completions") || !strcmp(url, "/v1/messages");
    if (gen && post) return generate(srv, c, kind, rc);
    if (gen || !strcmp(url, "/v1/models") || !strcmp(url, "/health") || !strcmp(url, "/stats")) {
        api_fail(&err, 405, "%s does not take %s", url, method);
        return send_error(c, kind, &err);
    }
    api_fail(&err, 404, "no such endpoint: %s %s", method, url);
    return send_error(c, kind, &err);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    request_ctx *rc = *con_cls;
    if (!rc) return;
    sb_free(&rc->body);
    free(rc);
    *con_cls = NULL;
}

static void log_mhd(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    fputs("flashmoe serve: http: ", stderr);
    vfprintf(stderr, fmt, ap);
}

int server_run(engine *e, const server_config *cfg) {
    server srv = {.e = e, .cfg = *cfg, .created = (long)time(NULL)};
    pthread_mutex_init(&srv.text_mu, NULL);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    int gai = getaddrinfo(cfg->host, port, &hints, &ai);
    if (gai) return cli_fail("--host %s: %s", cfg->host, gai_strerror(gai));
    signal(SIGPIPE, SIG_IGN);
    /* SIGINT and SIGTERM blocked in every thread (they inherit the mask) and taken by sigwait below. */
    sigset_t stop_signals, old_mask;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask);
    if (!(srv.w = worker_start(e, &cfg->worker))) {
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
        freeaddrinfo(ai);
        return 1;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, handle, &srv, MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)3600, MHD_OPTION_END);
    const int listen_errno = errno;
    freeaddrinfo(ai);
    if (!d) {
        worker_stop(srv.w);
        worker_free(srv.w);
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
        return cli_fail("cannot listen on %s:%d: %s", cfg->host, cfg->port, strerror(listen_errno));
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int bound = di ? di->port : cfg->port;
    const int v6 = strchr(cfg->host, ':') != NULL;
    fprintf(stderr, "flashmoe serve: %s (%s) on http://%s%s%s:%d%s — OpenAI /v1/chat/completions, /v1/completions; "
            "Anthropic /v1/messages. Ctrl-C stops.\n", cfg->model_id, e->info->architecture, v6 ? "[" : "",
            cfg->host, v6 ? "]" : "", bound, cfg->api_key ? " (API key required)" : "");
    printf("listening on port %d\n", bound);
    fflush(stdout);
    int sig = 0;
    while (sigwait(&stop_signals, &sig)) {
    }
    fprintf(stderr, "flashmoe serve: stopping\n");
    atomic_store(&server_stopping, 1);
    worker_stop(srv.w); /* cancels what runs; waiting connections see the stop and end */
    MHD_stop_daemon(d);
    worker_free(srv.w);
    pthread_mutex_destroy(&srv.text_mu);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    return 0;
}
