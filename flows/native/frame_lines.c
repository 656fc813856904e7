/* Lines of recorded Binance stream frames (klineflow recordings and captures) parsed in one
   pass, exactly, for the trades they hold.

   kf_frame_lines reads the lines of a block and writes, for each line, the trade of an
   aggTrade or trade event in the combined-stream wrapper, when the line is in the plain form
   Binance and the recorder write:

     recording   {"r":<ms>,"d":{"stream":"<name>","data":{<event>}}}
     capture     <seconds>.<fraction>: {"stream":"<name>","data":{<event>}}

   The event is a flat object: its keys may come in any order and others may be present
   (E, M, b, a of a trade event...), each value a string without escapes, an integer, true,
   false or null. Of it are read: "e" (aggTrade or trade), "s" (the symbol: 1 to 16 of A-Z
   and 0-9), the ids ("a", "f", "l" or "t": 1 to 18 digits), "p" and "q" (1 to 10 digits,
   optionally a dot and 0 to 8 more: units of 1e-8), "T" (1 to 18 digits) and "m" (true or
   false). Anything else (another event, an escape, a nested value, a key read twice, a
   number in another form) marks the line not clean, its numbers 0: the caller decides it
   with the per-line decoders, so no value is guessed. The symbol is returned packed in two
   64-bit words (its bytes, zero-padded), which the caller groups by.

   No allocation, no state, no Python: called through ctypes (which lets go of the
   interpreter), like dump_lines.c. */

#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIGITS 18
#define MAX_WHOLE_DIGITS 10
#define DECIMALS 8
#define MAX_SYMBOL 16

static const int64_t POW10[DECIMALS + 1] = {
    1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};

typedef struct {
    const char *p, *end;
} Cursor;

static int take(Cursor *c, const char *text) {
    size_t n = strlen(text);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, text, n) != 0) return 0;
    c->p += n;
    return 1;
}

/* a JSON integer: digits, optionally after a minus when `sign`, 1 to 18 of them, no leading
   zero (JSON has none: "01" is not a number, and the decoders refuse it) */
static int integer(Cursor *c, int sign, int64_t *out) {
    int negative = 0;
    if (sign && c->p < c->end && *c->p == '-') {
        negative = 1;
        c->p++;
    }
    const char *s = c->p;
    if (c->end - s >= 2 && s[0] == '0' && (unsigned)(unsigned char)s[1] - '0' <= 9) return 0;
    int64_t v = 0;
    while (c->p < c->end) {
        unsigned d = (unsigned)(unsigned char)*c->p - '0';
        if (d > 9) break;
        if (c->p - s == MAX_DIGITS) return 0;
        v = v * 10 + (int64_t)d;
        c->p++;
    }
    if (c->p == s) return 0;
    *out = negative ? -v : v;
    return 1;
}

/* a string's contents (without its quotes) when it has no escape, no control byte and only
   ASCII (a decoder checks UTF-8 where this would not) */
static int string(Cursor *c, const char **s, size_t *n) {
    if (c->p >= c->end || *c->p != '"') return 0;
    const char *start = ++c->p;
    for (; c->p < c->end; c->p++) {
        unsigned char b = (unsigned char)*c->p;
        if (b == '"') {
            *s = start;
            *n = (size_t)(c->p - start);
            c->p++;
            return 1;
        }
        if (b == '\\' || b < 0x20 || b >= 0x80) return 0;
    }
    return 0;
}

static int amount(const char *s, size_t n, int64_t *out) {
    const char *p = s, *end = s + n;
    int64_t whole = 0, frac = 0;
    while (p < end && *p != '.') {
        unsigned d = (unsigned)(unsigned char)*p - '0';
        if (d > 9 || p - s == MAX_WHOLE_DIGITS) return 0;
        whole = whole * 10 + (int64_t)d;
        p++;
    }
    if (p == s) return 0;
    int decimals = 0;
    if (p < end) {
        for (p++; p < end; p++) {
            unsigned d = (unsigned)(unsigned char)*p - '0';
            if (d > 9 || decimals == DECIMALS) return 0;
            frac = frac * 10 + (int64_t)d;
            decimals++;
        }
    }
    *out = whole * POW10[DECIMALS] + frac * POW10[DECIMALS - decimals];
    return 1;
}

/* past one simple value (string, integer, true, false, null) */
static int skip_value(Cursor *c) {
    const char *s;
    size_t n;
    int64_t v;
    if (c->p >= c->end) return 0;
    switch (*c->p) {
        case '"': return string(c, &s, &n);
        case 't': return take(c, "true");
        case 'f': return take(c, "false");
        case 'n': return take(c, "null");
        default: return integer(c, 1, &v);
    }
}

static int flag(Cursor *c, uint8_t *out) {
    if (take(c, "true")) {
        *out = 1;
        return 1;
    }
    if (take(c, "false")) {
        *out = 0;
        return 1;
    }
    return 0;
}

enum { K_E = 1, K_S = 2, K_A = 4, K_T_ID = 8, K_P = 16, K_Q = 32, K_F = 64, K_L = 128,
       K_TIME = 256, K_M = 512 };

typedef struct {
    int64_t first, last, price, qty, time;
    uint64_t sym[2];
    uint8_t maker;
} Trade;

/* the event object at c: its trade when it is an aggTrade or trade event in plain form */
static int event(Cursor *c, Trade *t) {
    unsigned seen = 0;
    int agg = -1;
    int64_t a = 0, id = 0;
    if (!take(c, "{")) return 0;
    for (;;) {
        const char *k;
        size_t kn;
        if (!string(c, &k, &kn) || !take(c, ":")) return 0;
        unsigned key = 0;
        if (kn == 1) {
            switch (k[0]) {
                case 'e': key = K_E; break;
                case 's': key = K_S; break;
                case 'a': key = K_A; break;
                case 't': key = K_T_ID; break;
                case 'p': key = K_P; break;
                case 'q': key = K_Q; break;
                case 'f': key = K_F; break;
                case 'l': key = K_L; break;
                case 'T': key = K_TIME; break;
                case 'm': key = K_M; break;
                default: key = 0;
            }
        }
        if (key & seen) return 0; /* a key read twice */
        seen |= key;
        const char *s;
        size_t n;
        int ok = 1;
        switch (key) {
            case K_E:
                ok = string(c, &s, &n);
                if (ok && n == 8 && memcmp(s, "aggTrade", 8) == 0) agg = 1;
                else if (ok && n == 5 && memcmp(s, "trade", 5) == 0) agg = 0;
                else ok = 0;
                break;
            case K_S:
                ok = string(c, &s, &n) && n >= 1 && n <= MAX_SYMBOL;
                if (ok) {
                    unsigned char packed[16] = {0};
                    for (size_t i = 0; i < n; i++) {
                        unsigned char b = (unsigned char)s[i];
                        if (!((b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9'))) ok = 0;
                        packed[i] = b;
                    }
                    memcpy(t->sym, packed, 16);
                }
                break;
            case K_A: ok = integer(c, 1, &a); break;
            case K_T_ID: ok = integer(c, 0, &id); break;
            case K_P: ok = string(c, &s, &n) && amount(s, n, &t->price); break;
            case K_Q: ok = string(c, &s, &n) && amount(s, n, &t->qty); break;
            case K_F: ok = integer(c, 0, &t->first); break;
            case K_L: ok = integer(c, 0, &t->last); break;
            case K_TIME: ok = integer(c, 0, &t->time); break;
            case K_M: ok = flag(c, &t->maker); break;
            default: ok = skip_value(c);
        }
        if (!ok) return 0;
        if (take(c, "}")) break;
        if (!take(c, ",")) return 0;
    }
    const unsigned common = K_E | K_S | K_P | K_Q | K_TIME | K_M;
    if (agg == 1) {
        /* "t" in an aggTrade event is a key its decoder does not read: allowed, unread */
        return (seen & (common | K_A | K_F | K_L)) == (common | K_A | K_F | K_L);
    }
    if (agg == 0) {
        /* "a", "f", "l" of a trade event are not its fields: read above, dropped here */
        if ((seen & (common | K_T_ID)) != (common | K_T_ID)) return 0;
        t->first = t->last = id;
        return 1;
    }
    return 0;
}

/* {"stream":"<name>","data":{<event>}} */
static int combined(Cursor *c, Trade *t) {
    const char *s;
    size_t n;
    return take(c, "{\"stream\":") && string(c, &s, &n) && take(c, ",\"data\":") && event(c, t)
           && take(c, "}");
}

/* Parses up to `capacity` lines of buf[0, len); a line ends at '\n' (the last one may end
   at `len`). `capture`: 0 for recording lines, 1 for capture lines. Returns the number of
   lines; line_end[i] is the offset just past line i (its '\n' not included). */
int64_t kf_frame_lines(const char *buf, int64_t len, int32_t capture, int64_t capacity,
                       int64_t *first, int64_t *last, int64_t *price, int64_t *qty,
                       int64_t *time, uint8_t *maker, uint8_t *clean, int64_t *line_end,
                       int64_t *recv, uint64_t *sym) {
    const char *p = buf, *end = buf + len;
    int64_t n = 0;
    while (p < end && n < capacity) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl != NULL ? nl : end;
        Cursor c = {p, stop};
        Trade t;
        memset(&t, 0, sizeof t);
        int64_t r = 0;
        int ok;
        if (capture) {
            /* <digits>.<digits>: then the frame; the time in ms as Python's
               int(float(head) * 1000) gives it (both round the decimal to the nearest
               double, and truncate) */
            const char *h = c.p;
            while (c.p < c.end && (unsigned)(unsigned char)*c.p - '0' <= 9) c.p++;
            ok = c.p > h && c.p - h <= 12 && take(&c, ".");
            const char *frac = c.p;
            while (ok && c.p < c.end && (unsigned)(unsigned char)*c.p - '0' <= 9) c.p++;
            ok = ok && c.p > frac && c.p - frac <= 9;
            if (ok) {
                char head[32];
                size_t hn = (size_t)(c.p - h);
                memcpy(head, h, hn);
                head[hn] = 0;
                r = (int64_t)(strtod(head, NULL) * 1000.0);
            }
            ok = ok && take(&c, ": ") && combined(&c, &t);
        } else {
            ok = take(&c, "{\"r\":") && integer(&c, 1, &r) && take(&c, ",\"d\":")
                 && combined(&c, &t) && take(&c, "}");
        }
        ok = ok && c.p == c.end;
        if (!ok) {
            memset(&t, 0, sizeof t);
            r = 0;
        }
        recv[n] = r;
        sym[2 * n] = t.sym[0];
        sym[2 * n + 1] = t.sym[1];
        first[n] = t.first;
        last[n] = t.last;
        price[n] = t.price;
        qty[n] = t.qty;
        time[n] = t.time;
        maker[n] = t.maker;
        clean[n] = (uint8_t)ok;
        line_end[n] = stop - buf;
        n++;
        p = stop < end ? stop + 1 : end;
    }
    return n;
}
