/* JSON text to interpreter values, for the variables a chat template gets
 * (messages, tools). The other direction, tojson, is jinja_to_json in
 * jinja_runtime.h. */
#ifndef FM_TEXT_JINJA_JSON_H
#define FM_TEXT_JINJA_JSON_H

#include "text/jinja_value.h"

/* Parses JSON into a value as Python's json.loads would: objects keep their
 * key order (a repeated key keeps its first position and its last value),
 * numbers written without '.', 'e' or 'E' are ints. On failure returns
 * FM_ERR_ARGUMENT with a message naming `label`, line and column. */
fm_status jinja_value_from_json(const char *text, size_t len, const char *label, jinja_value *out);

#endif
