/* flashmoe serve: an HTTP server speaking the OpenAI and Anthropic APIs
 * (libmicrohttpd, one thread per connection; generation in one worker
 * thread, see worker.h). */
#ifndef FM_APP_SERVER_SERVER_H
#define FM_APP_SERVER_SERVER_H

#include "engine.h"
#include "server/worker.h"

#include <pthread.h>

typedef struct {
    const char *host;        /* address to bind; default 127.0.0.1 */
    int port;                /* default 8000; 0 = any free port (printed) */
    const char *api_key;     /* NULL = no authentication */
    const char *model_id;    /* the name /v1/models lists and responses carry */
    size_t max_body;         /* bytes of a request body at most */
    int max_connections;
    int default_max_tokens;  /* when a request gives none */
    int thinking;            /* -1 the template's default, 0 off, 1 on (a request may override) */
    worker_options worker;
} server_config;

typedef struct {
    engine *e;
    worker *w;
    server_config cfg;
    pthread_mutex_t text_mu; /* the tokenizer and template serve one request at a time */
    long created;            /* start time, for /v1/models */
} server;

/* Runs until SIGINT/SIGTERM. 0 or the exit code. */
int server_run(engine *e, const server_config *cfg);

#endif
