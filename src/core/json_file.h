/* Reading a JSON file with cJSON, with messages that name the file and the
 * line of a syntax error. */
#ifndef FM_CORE_JSON_FILE_H
#define FM_CORE_JSON_FILE_H

#include "flashmoe.h"

#include <cjson/cJSON.h>

/* Parses `len` bytes of text; `label` names the source in messages. */
fm_status json_parse_text(const char *text, size_t len, const char *label, cJSON **out);
fm_status json_file_read(const char *path, cJSON **out);

#endif
