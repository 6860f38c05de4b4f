/* weft/chan.h: included by weft.h; do not include directly. */
#ifndef WEFT_CHAN_H
#define WEFT_CHAN_H
#include "../weft.h"

#endif /* WEFT_CHAN_H */
