/* fuzz_config.c - libFuzzer target: config_load_mem() on arbitrary bytes
 *
 * Whatever the input, config_load_mem() must return a config or NULL with
 * at least one error line, never crash or leak. A config that loads must
 * dump to YAML that loads again and dumps to the same text (the round trip
 * check-config relies on); the one documented exception is an inline
 * password, which the dump redacts.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/config.h"
#include "gateway/util/buf.h"
#include "gateway/util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* fuzz_dump - config_dump into a new string */
static char *fuzz_dump(const struct config *cfg)
{
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);

    if (f == NULL)
        abort();
    config_dump(cfg, f);
    if (fclose(f) != 0)
        abort();
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf errors;
    struct config *cfg, *again;
    char *d1;

    /* password_file warnings would flood the fuzzer's output. */
    log_set_level(LOG_LVL_ERROR);
    buf_init(&errors, 64 * 1024);
    cfg = config_load_mem("fuzz", (const char *) data, size, &errors);
    if (cfg == NULL) {
        if (buf_len(&errors) == 0)
            abort();            /* a refusal must say why */
        buf_free(&errors);
        return 0;
    }
    if (buf_len(&errors) != 0)
        abort();                /* success with errors is a contradiction */
    d1 = fuzz_dump(cfg);
    again = config_load_mem("fuzz-dump", d1, strlen(d1), &errors);
    if (!config_has_redacted_secrets(cfg)) {
        char *d2;

        if (again == NULL) {
            (void) fprintf(stderr, "dump did not load again:\n%s\n%s", d1, buf_str(&errors));
            abort();
        }
        d2 = fuzz_dump(again);
        /* The header comment names the source; compare from the first key. */
        if (strcmp(strchr(d1, '\n'), strchr(d2, '\n')) != 0) {
            (void) fprintf(stderr, "dump changed on reload:\n%s\n---\n%s", d1, d2);
            abort();
        }
        free(d2);
    }
    config_free(again);
    config_free(cfg);
    free(d1);
    buf_free(&errors);
    return 0;
}
