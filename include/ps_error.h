/* Error codes shared by every pure-C unit. Functions return 0 on success or
 * one of these negative codes; the binding layer turns them into Python
 * exceptions in one place (ps_raise in module.c). */
#ifndef PS_ERROR_H
#define PS_ERROR_H

enum {
    PS_OK = 0,
    PS_ENOMEM = -1,   /* an allocation failed */
    PS_EOS = -2,      /* a system call failed; the caller keeps errno */
    PS_EZLIB = -3,    /* zlib reported an error */
    PS_EJSON = -4,    /* yajl refused a value (invalid embedded JSON, ...) */
    PS_EINVAL = -5,   /* an argument is out of range */
    PS_EFULL = -6,    /* a configured cap was reached; the caller counts it */
    PS_ESTATE = -7    /* the call does not fit the current state */
};

/* Static, human-readable text for a PS_E* code. */
const char *ps_strerror(int code);

#endif /* PS_ERROR_H */
