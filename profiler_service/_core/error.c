/* Text for the PS_E* codes. */
#include "ps_error.h"

const char *
ps_strerror(int code)
{
    switch (code) {
    case PS_OK:
        return "success";
    case PS_ENOMEM:
        return "out of memory";
    case PS_EOS:
        return "system call failed";
    case PS_EZLIB:
        return "zlib error";
    case PS_EJSON:
        return "invalid JSON";
    case PS_EINVAL:
        return "invalid argument";
    case PS_EFULL:
        return "capacity reached";
    case PS_ESTATE:
        return "invalid state";
    }
    return "unknown error";
}
