/* digest.c - SHA-256 through OpenSSL's EVP interface */
#include "gateway/digest.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "gateway/util/log.h"

struct digest {
    EVP_MD_CTX *ctx;
};

struct digest *digest_begin(const struct envelope *env)
{
    struct digest *d = OPENSSL_zalloc(sizeof(*d));

    if (d == NULL || (d->ctx = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestInit_ex(d->ctx, EVP_sha256(), NULL) != 1)
        sy_panic("digest: cannot initialise SHA-256");
    /* NUL separators: no two envelopes feed the same bytes. */
    digest_update(d, env->sender, strlen(env->sender) + 1);
    for (size_t i = 0; i < env->nrcpt; i++)
        digest_update(d, env->rcpts[i].addr, strlen(env->rcpts[i].addr) + 1);
    digest_update(d, "\n", 1);
    return d;
}

void digest_update(struct digest *d, const void *p, size_t n)
{
    if (n > 0 && EVP_DigestUpdate(d->ctx, p, n) != 1)
        sy_panic("digest: SHA-256 update failed");
}

void digest_final(struct digest *d, char hex[DIGEST_HEX_SIZE])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (EVP_DigestFinal_ex(d->ctx, md, &n) != 1 || n != 32)
        sy_panic("digest: SHA-256 final failed");
    for (unsigned i = 0; i < n; i++)
        (void) snprintf(hex + 2 * (size_t) i, 3, "%02x", md[i]);
    digest_free(d);
}

void digest_free(struct digest *d)
{
    if (d == NULL)
        return;
    EVP_MD_CTX_free(d->ctx);
    OPENSSL_free(d);
}
