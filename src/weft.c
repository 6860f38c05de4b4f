/* weft_strerror and other small public helpers that belong to no layer. */
#include <string.h>
#include "weft.h"

WEFT_API const char *weft_strerror(int err)
{
	/* strerror() is not thread-safe for unknown values; strerrordesc_np is. */
	const char *s = strerrordesc_np(err < 0 ? -err : err);
	return s ? s : "unknown error";
}
