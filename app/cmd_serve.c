/* flashmoe serve: the OpenAI- and Anthropic-compatible HTTP server (app/server). */
#include "engine.h"
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

static const char serve_help[] =
    "usage: flashmoe serve -m DIR [options]\n"
    "An HTTP server for OpenAI and Anthropic clients: POST /v1/chat/completions, /v1/completions,\n"
    "/v1/messages (streaming, tools); GET /v1/models, /health (no key needed), /stats.\n"
    "  --host ADDR           address to listen on (default 127.0.0.1: this machine only)\n"
    "  --port N              port (default 8000; 0 = any free port, printed)\n"
    "  --api-key KEY         require 'Authorization: Bearer KEY' or 'x-api-key: KEY'\n"
    "                        (default: $FLASHMOE_API_KEY if set, else none)\n"
    "  --model-name NAME     the model id clients see (default: the model directory's name)\n"
    "  -n N                  max tokens of an answer when a request gives none (default 4096)\n"
    "  --prompt-cache SIZE   memory for cached conversation states (default 1G; 0 = only the last one)\n"
    "  --queue N             requests waiting at most; more get 429 (default 64)\n"
    "  --max-body SIZE       largest request body (default 16M)\n"
    "  --max-connections N   open connections at most (default 128)\n"
    "  --think | --no-think  thinking on or off unless a request says (chat_template_kwargs.enable_thinking)\n"
    "  --tokenizer PATH      tokenizer.json or its directory (default: the model directory)\n"
    "  --template T          chat template: the model's (default), 'chatml', or a file\n"
    "  --quiet               no line per request on stderr\n";

int cmd_serve(int argc, char **argv) {
    engine_options o;
    engine_options_init(&o);
    server_config cfg = {.host = "127.0.0.1",
                         .port = 8000,
                         .api_key = getenv("FLASHMOE_API_KEY"),
                         .max_body = 16u << 20,
                         .max_connections = 128,
                         .default_max_tokens = 4096,
                         .thinking = -1,
                         .worker = {.cache_bytes = 1ull << 30, .max_queue = 64, .verbose = 1}};
    if (cfg.api_key && !*cfg.api_key) cfg.api_key = NULL;
    const char *name = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("%s%s", serve_help, cli_common_help);
            return 0;
        }
        int r = cli_parse_common(argc, argv, &i, &o.common);
        if (r < 0) return 1;
        if (r) continue;
        if (!strcmp(a, "--think") || !strcmp(a, "--no-think")) {
            cfg.thinking = !strcmp(a, "--think");
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            cfg.worker.verbose = 0;
            continue;
        }
        static const char *const valued[] = {"--host", "--port", "--api-key", "--model-name", "-n", "--prompt-cache",
                                             "--queue", "--max-body", "--max-connections", "--tokenizer", "--template"};
        int known = 0;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) known |= !strcmp(a, valued[k]);
        if (!known) return cli_fail("serve: unknown option '%s' (see flashmoe serve --help)", a);
        if (i + 1 >= argc) return cli_fail("%s needs a value", a);
        const char *v = argv[++i];
        long n = cli_parse_count(v);
        if (!strcmp(a, "--host")) cfg.host = v;
        else if (!strcmp(a, "--api-key")) cfg.api_key = *v ? v : NULL;
        else if (!strcmp(a, "--model-name")) name = v;
        else if (!strcmp(a, "--tokenizer")) o.tokenizer_path = v;
        else if (!strcmp(a, "--template")) o.template_arg = v;
        else if (!strcmp(a, "--port")) {
            if (n < 0 || n > 65535) return cli_fail("--port: '%s' is not a port number", v);
            cfg.port = (int)n;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--queue") || !strcmp(a, "--max-connections")) {
            if (cli_count_option(a, v, 1, 1000000, &n)) return 1;
            if (!strcmp(a, "-n")) cfg.default_max_tokens = (int)n;
            else if (!strcmp(a, "--queue")) cfg.worker.max_queue = (int)n;
            else cfg.max_connections = (int)n;
        } else { /* sizes */
            uint64_t bytes = cli_parse_size(v);
            if (!bytes && strcmp(v, "0")) return cli_fail("%s: '%s' is not a size (e.g. 512M, 2G)", a, v);
            if (!strcmp(a, "--prompt-cache")) cfg.worker.cache_bytes = bytes;
            else if (bytes < 1024) return cli_fail("--max-body: %s is too small", v);
            else cfg.max_body = bytes;
        }
    }
    if (o.template_arg && !strcmp(o.template_arg, "none"))
        return cli_fail("--template none: the server needs a chat template (use /v1/completions for raw text)");
    engine e;
    int rc = engine_open(&e, &o);
    if (rc) return rc;
    char id[256];
    if (!name) {
        const char *dir = cli_model_dir(&o.common);
        size_t len = strlen(dir);
        while (len > 1 && dir[len - 1] == '/') len--;
        const char *base = dir + len;
        while (base > dir && base[-1] != '/') base--;
        snprintf(id, sizeof id, "%.*s", (int)(dir + len - base), base);
        name = id;
    }
    cfg.model_id = name;
    rc = server_run(&e, &cfg);
    engine_close(&e);
    return rc;
}
