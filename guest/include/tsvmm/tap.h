/*
 * TAP results on the console, the structured channel tests parse:
 *   1..N            tap_plan(N)
 *   ok 3 - text     tap_ok(1, "text")
 *   not ok 4 - text tap_ok(0, "text")
 *   # text          tap_diag("text")
 * Numbering is global and SMP-safe; each line is written atomically.
 */
#ifndef TSVMM_TAP_H
#define TSVMM_TAP_H

#include <tsvmm/console.h>

void tap_plan(unsigned n);
/* Prints the result line and returns cond (normalised to 0/1). */
int tap_ok(int cond, const char *fmt, ...) TSVMM_PRINTF(2, 3);
void tap_skip(const char *fmt, ...) TSVMM_PRINTF(1, 2);   /* "ok N - # SKIP text" */
void tap_diag(const char *fmt, ...) TSVMM_PRINTF(1, 2);
/* Instead of tap_plan: "1..0 # SKIP text", the whole guest is skipped (tap_status then passes). */
void tap_skip_all(const char *fmt, ...) TSVMM_PRINTF(1, 2);
/* 0 if every test passed and the count matches the plan; else TSVMM_STATUS_FAIL (with a diag line). */
int tap_status(void);

/*
 * Steps: one TAP line for many checks. tap_step_begin(); tap_step_fail("...") for each failed
 * check (the first failure is kept); tap_step_end("text") prints the line, with the first failure
 * as a diag line, and returns whether the step passed. State is per vCPU.
 */
void tap_step_begin(void);
void tap_step_fail(const char *fmt, ...) TSVMM_PRINTF(1, 2);
int tap_step_end(const char *fmt, ...) TSVMM_PRINTF(1, 2);
/* Whether the current step has no failure yet */
int tap_step_ok(void);

#endif
