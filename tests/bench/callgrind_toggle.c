/* Callgrind client requests for tests/bench/callgrind.py: Python cannot issue them itself, so the
   measured loop calls these through ctypes. Instrumentation starts off (--instr-atstart=no), so
   the interpreter's start-up and the model load run fast and uncounted. */
#include <valgrind/callgrind.h>

void creditmodel_callgrind_start(void) {
    CALLGRIND_ZERO_STATS;
    CALLGRIND_START_INSTRUMENTATION;
}

void creditmodel_callgrind_stop(void) {
    CALLGRIND_STOP_INSTRUMENTATION;
    CALLGRIND_DUMP_STATS_AT("measured");
}
