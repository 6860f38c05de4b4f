/* weft/sync.h: included by weft.h; do not include directly. */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H
#include "../weft.h"

#endif /* WEFT_SYNC_H */
