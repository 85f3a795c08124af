/*
 * bsa.h - umbrella header of libbsa, the block-sparse attention library.
 * See bsa/core.h for the API and its semantics.
 */
#ifndef BSA_H
#define BSA_H
#include "bsa/core.h"
#endif
