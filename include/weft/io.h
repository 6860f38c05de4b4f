/* weft/io.h: included by weft.h; do not include directly. */
#ifndef WEFT_IO_H
#define WEFT_IO_H
#include "../weft.h"

#endif /* WEFT_IO_H */
