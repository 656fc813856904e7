/* Binance trade dump lines (aggTrades: 8 fields, trades: 7) parsed in one pass, exactly.

   kf_dump_lines reads the lines of a block and writes, for each line, the numbers the
   columnar reader needs and whether the line is in Binance's own strict form:

     integers  1 to 18 plain digits (so every value fits int64 exactly)
     amounts   1 to 10 digits, optionally a dot and 0 to 8 more digits, as units of 1e-8
     flags     exactly "True" or "False"

   A line with another field count, or a checked field outside that form, is marked not clean
   and its numbers are 0: the caller decides it with the per-row rules, so a value is never
   guessed. Fields the reader does not use (the aggregate id and isBestMatch of an aggTrades
   line; quoteQty and isBestMatch of a trades line) may hold any bytes but a comma.

   No allocation, no state, no Python: the caller passes numpy buffers through ctypes, which
   lets go of the interpreter for the call, so blocks are parsed on several threads at once.
   Each byte of a clean line is looked at once. */

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#define MAX_INT_DIGITS 18
#define MAX_WHOLE_DIGITS 10
#define DECIMALS 8

static const int64_t POW10[DECIMALS + 1] = {
    1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};

/* A plain integer from p up to the next byte that is not a digit; NULL when it is not one
   (none or more than 18 digits). Returns where it stopped. */
static const char *int_field(const char *p, const char *end, int64_t *out) {
    const char *s = p;
    int64_t v = 0;
    while (p < end) {
        unsigned d = (unsigned)(unsigned char)*p - '0';
        if (d > 9) break;
        if (p - s == MAX_INT_DIGITS) return NULL;
        v = v * 10 + (int64_t)d;
        p++;
    }
    if (p == s) return NULL;
    *out = v;
    return p;
}

/* An amount in 1e-8 units from p; NULL when it is not in the strict form. */
static const char *amount_field(const char *p, const char *end, int64_t *out) {
    const char *s = p;
    int64_t whole = 0, frac = 0;
    while (p < end) {
        unsigned d = (unsigned)(unsigned char)*p - '0';
        if (d > 9) break;
        if (p - s == MAX_WHOLE_DIGITS) return NULL;
        whole = whole * 10 + (int64_t)d;
        p++;
    }
    if (p == s) return NULL;
    int decimals = 0;
    if (p < end && *p == '.') {
        for (p++; p < end; p++) {
            unsigned d = (unsigned)(unsigned char)*p - '0';
            if (d > 9) break;
            if (decimals == DECIMALS) return NULL;
            frac = frac * 10 + (int64_t)d;
            decimals++;
        }
    }
    *out = whole * POW10[DECIMALS] + frac * POW10[DECIMALS - decimals];
    return p;
}

/* "True" or "False" from p; NULL for anything else (the byte after it is checked by the
   caller, so "Trueish" is refused there). */
static const char *flag_field(const char *p, const char *end, uint8_t *out) {
    if (end - p >= 4 && memcmp(p, "True", 4) == 0) {
        *out = 1;
        return p + 4;
    }
    if (end - p >= 5 && memcmp(p, "False", 5) == 0) {
        *out = 0;
        return p + 5;
    }
    return NULL;
}

/* past the comma that must end a field at p; NULL when something else is there */
static const char *comma(const char *p, const char *end) {
    return (p != NULL && p < end && *p == ',') ? p + 1 : NULL;
}

/* past a field the reader does not use and its comma; NULL at a line end first */
static const char *skip_field(const char *p, const char *end) {
    if (p == NULL) return NULL;
    for (; p < end; p++) {
        if (*p == ',') return p + 1;
        if (*p == '\n') return NULL;
    }
    return NULL;
}

/* the end of a line whose last field (unused) starts at p; NULL if it has another comma */
static const char *last_field(const char *p, const char *end) {
    if (p == NULL) return NULL;
    for (; p < end && *p != '\n'; p++) {
        if (*p == ',') return NULL;
    }
    return p;
}

/* One line from p: its numbers when clean; returns its end, or NULL when not clean. */
static const char *agg_line(const char *p, const char *end, int64_t *v, uint8_t *m) {
    p = skip_field(p, end); /* aggregate trade id */
    if (p) p = comma(amount_field(p, end, &v[2]), end);
    if (p) p = comma(amount_field(p, end, &v[3]), end);
    if (p) p = comma(int_field(p, end, &v[0]), end);
    if (p) p = comma(int_field(p, end, &v[1]), end);
    if (p) p = comma(int_field(p, end, &v[4]), end);
    if (p) p = comma(flag_field(p, end, m), end);
    return last_field(p, end); /* isBestMatch */
}

static const char *trade_line(const char *p, const char *end, int64_t *v, uint8_t *m) {
    p = comma(int_field(p, end, &v[0]), end);
    if (p) p = comma(amount_field(p, end, &v[2]), end);
    if (p) p = comma(amount_field(p, end, &v[3]), end);
    p = skip_field(p, end); /* quoteQty */
    if (p) p = comma(int_field(p, end, &v[4]), end);
    if (p) p = comma(flag_field(p, end, m), end);
    p = last_field(p, end); /* isBestMatch */
    v[1] = v[0];
    return p;
}

/* Parses up to `capacity` lines of buf[0, len). A line ends at '\n'; the last one may end
   at `len` (if it is not empty). Returns how many lines were read; line_end[i] is the
   offset just past line i (its '\n' not included). `fields`: 8 (aggTrades) or 7 (trades). */
int64_t kf_dump_lines(const char *buf, int64_t len, int32_t fields, int64_t capacity,
                      int64_t *first, int64_t *last, int64_t *price, int64_t *qty,
                      int64_t *time, uint8_t *maker, uint8_t *clean, int64_t *line_end) {
    const char *p = buf, *end = buf + len;
    int64_t n = 0;
    while (p < end && n < capacity) {
        int64_t v[5] = {0, 0, 0, 0, 0}; /* first, last, price, qty, time */
        uint8_t m = 0;
        const char *stop = fields == 8 ? agg_line(p, end, v, &m) : trade_line(p, end, v, &m);
        const int ok = stop != NULL;
        if (!ok) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            stop = nl != NULL ? nl : end;
            v[0] = v[1] = v[2] = v[3] = v[4] = 0;
            m = 0;
        }
        first[n] = v[0];
        last[n] = v[1];
        price[n] = v[2];
        qty[n] = v[3];
        time[n] = v[4];
        maker[n] = m;
        clean[n] = (uint8_t)ok;
        line_end[n] = stop - buf;
        n++;
        p = stop < end ? stop + 1 : end;
    }
    return n;
}
