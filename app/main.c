/* flashmoe: command dispatch. */
#include "cli.h"

#include <string.h>

#define FLASHMOE_VERSION "0.1.0"

static void usage(FILE *out) {
    fputs("flashmoe " FLASHMOE_VERSION " — Mixture-of-Experts inference from Hugging Face checkpoints\n"
          "\n"
          "usage: flashmoe COMMAND [options]\n"
          "\n"
          "commands:\n"
          "  run       -m DIR -p \"prompt\" [-n N] [--temp T ...]   answer one prompt (chat template, streaming)\n"
          "  chat      -m DIR                          multi-turn chat in the terminal\n"
          "  serve     -m DIR [--port 8000]             OpenAI/Anthropic-compatible HTTP server\n"
          "  info      -m DIR                          architecture, dimensions, layer schedule, sizes\n"
          "  score     -m DIR --ids 1,2,3 -o OUT       logits of every position, raw float32 [T, vocab]\n"
          "  generate  -m DIR --ids 1,2,3 -n N --greedy  N generated token ids on one line\n"
          "  tokenize  --tokenizer PATH [--text-file F | TEXT]   text → ids (--decode 1,2,3: ids → text)\n"
          "  convert   SRC DST [--bits 8|4|2|16] [--group 64]  pack a checkpoint for streaming experts\n"
          "  verify    DIR                             recompute every checksum of a packed model\n"
          "\n"
          "common options:\n"
          "  -m, --model DIR     model directory (Hugging Face, MLX, or packed by flashmoe convert)\n"
          "  -t, --threads N     compute threads (default: one per core)\n"
          "  --ctx N             context limit in tokens (default: the model's max_position_embeddings)\n"
          "  --experts K         routed experts per token (default: the model's own)\n"
          "  --timing            per-layer time breakdown and totals on stderr\n"
          "\n"
          "Without -m, the model is $FLASHMOE_MODEL, else the shipped assistant beside this binary\n"
          "(models/ of the repository it was built in, or PREFIX/share/flashmoe after make install).\n"
          "\n"
          "Run 'flashmoe COMMAND --help' for a command's options.\n",
          out);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        puts("flashmoe " FLASHMOE_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "score")) return cmd_score(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "chat")) return cmd_chat(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert")) return cmd_convert(argc - 1, argv + 1);
    if (!strcmp(cmd, "verify")) return cmd_verify(argc - 1, argv + 1);
    usage(stderr);
    return cli_fail("unknown command '%s'", cmd);
}
