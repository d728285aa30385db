/* The four benchmark workloads of examples/bench_udf, in C, against the guest ABI
 * (docs/abi.md) with no library at all: a bump allocator over the memory after the data,
 * the input decoded and the reply encoded by hand, a small JSON reader.
 *
 *   clang --target=wasm32-unknown-unknown -O2 -nostdlib -Wl,--no-entry \
 *         -o bench_udf_c.wasm bench_udf.c
 *
 * (Debian: apt-get install clang lld.) Every call gets a fresh instance, so nothing is freed. */

typedef unsigned char u8;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long size_t;

#define IMPORT(name) __attribute__((import_module("ferrite"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("get_key") i64 get_key(const u8 *key, u32 len);
IMPORT("reply") void reply(const u8 *ptr, u32 len);

/* The compiler may call these for copies and fills. */
void *memcpy(void *dst, const void *src, size_t n) {
    u8 *d = dst;
    const u8 *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    u8 *d = dst;
    while (n--) *d++ = (u8)c;
    return dst;
}

/* ---- memory: a bump allocator from the linker's heap base, growing memory as needed ---- */

extern u8 __heap_base;
static size_t heap_top;

EXPORT("alloc") u8 *alloc(u32 len) {
    if (heap_top == 0) heap_top = (size_t)&__heap_base;
    size_t start = (heap_top + 7) & ~(size_t)7;
    size_t end = start + len;
    size_t have = __builtin_wasm_memory_size(0) * 65536;
    if (end > have) {
        size_t pages = (end - have + 65535) / 65536;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) __builtin_trap();
    }
    heap_top = end;
    return (u8 *)start;
}

/* ---- input: keys and arguments, each `u32 count, count x (u32 len, bytes)` ---- */

struct bytes {
    const u8 *ptr;
    u32 len;
};

static u32 read_u32(const u8 *p) { return p[0] | p[1] << 8 | p[2] << 16 | (u32)p[3] << 24; }

/* The first item of the list at *at (len 0 and ptr 0 when the list is empty); *at moves past
 * the list. */
static struct bytes first_of_list(const u8 **at) {
    struct bytes first = {0, 0};
    u32 count = read_u32(*at);
    *at += 4;
    for (u32 i = 0; i < count; i++) {
        u32 n = read_u32(*at);
        if (i == 0) first = (struct bytes){*at + 4, n};
        *at += 4 + n;
    }
    return first;
}

static struct bytes first_key(const u8 *input) {
    const u8 *at = input;
    return first_of_list(&at);
}

static struct bytes first_arg(const u8 *input) {
    const u8 *at = input;
    first_of_list(&at);
    return first_of_list(&at);
}

/* ---- replies ---- */

enum { TAG_INT = 1, TAG_BULK = 2, TAG_ERROR = 4, TAG_ARRAY = 5 };

static u8 *put_u32(u8 *p, u32 v) {
    p[0] = v, p[1] = v >> 8, p[2] = v >> 16, p[3] = v >> 24;
    return p + 4;
}

static u8 *put_i64(u8 *p, i64 v) {
    for (int i = 0; i < 8; i++) p[i] = (u8)((unsigned long long)v >> (8 * i));
    return p + 8;
}

static i64 reply_line(u8 tag, const u8 *text, u32 len) {
    u8 *out = alloc(5 + len);
    out[0] = tag;
    memcpy(put_u32(out + 1, len), text, len);
    reply(out, 5 + len);
    return 0;
}

static i64 error(const char *line) {
    u32 len = 0;
    while (line[len]) len++;
    return reply_line(TAG_ERROR, (const u8 *)line, len);
}

/* ---- key access ---- */

EXPORT("keylen") i64 keylen(const u8 *input, u32 input_len) {
    struct bytes key = first_key(input);
    i64 packed = get_key(key.ptr, key.len);
    return packed < 0 ? 0 : (u32)packed;
}

/* ---- string: reversed and uppercased, and the count of ASCII letters ---- */

EXPORT("string") i64 string(const u8 *input, u32 input_len) {
    struct bytes text = first_arg(input);
    if (!text.ptr) return error("ERR an argument is needed");
    u8 *out = alloc(1 + 4 + 1 + 4 + text.len + 1 + 8);
    u8 *p = put_u32(out + 1, 2);
    out[0] = TAG_ARRAY;
    *p++ = TAG_BULK;
    p = put_u32(p, text.len);
    i64 letters = 0;
    for (u32 i = 0; i < text.len; i++) {
        u8 c = text.ptr[text.len - 1 - i];
        int lower = c >= 'a' && c <= 'z';
        letters += lower || (c >= 'A' && c <= 'Z');
        p[i] = lower ? c - 32 : c;
    }
    p += text.len;
    *p++ = TAG_INT;
    p = put_i64(p, letters);
    reply(out, (u32)(p - out));
    return 0;
}

/* ---- numeric: primes up to N by trial division, in 64-bit integers like the other guests ---- */

EXPORT("primes") i64 primes(const u8 *input, u32 input_len) {
    struct bytes arg = first_arg(input);
    if (!arg.ptr || arg.len == 0) return error("ERR the argument is not an integer");
    i64 n = 0;
    for (u32 i = 0; i < arg.len; i++) {
        if (arg.ptr[i] < '0' || arg.ptr[i] > '9') return error("ERR the argument is not an integer");
        n = n * 10 + (arg.ptr[i] - '0');
    }
    i64 count = 0;
    for (i64 candidate = 2; candidate <= n; candidate++) {
        int prime = 1;
        for (i64 divisor = 2; divisor * divisor <= candidate; divisor++) {
            if (candidate % divisor == 0) {
                prime = 0;
                break;
            }
        }
        count += prime;
    }
    return count;
}

/* ---- json: the sum of "price" over the items whose "active" is true ---- */

struct reader {
    const u8 *p, *end;
    int bad;
};

static void skip_space(struct reader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t')) r->p++;
}

static int eat(struct reader *r, u8 c) {
    skip_space(r);
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return 1;
    }
    return 0;
}

/* A string's raw bytes (escapes are skipped over, not decoded: keys here have none). */
static struct bytes read_string(struct reader *r) {
    struct bytes s = {0, 0};
    if (!eat(r, '"')) {
        r->bad = 1;
        return s;
    }
    s.ptr = r->p;
    while (r->p < r->end && *r->p != '"') r->p += *r->p == '\\' ? 2 : 1;
    if (r->p >= r->end) {
        r->bad = 1;
        return s;
    }
    s.len = (u32)(r->p - s.ptr);
    r->p++;
    return s;
}

static double read_number(struct reader *r) {
    skip_space(r);
    double sign = 1, value = 0, scale = 1;
    int digits = 0;
    if (r->p < r->end && *r->p == '-') sign = -1, r->p++;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') value = value * 10 + (*r->p++ - '0'), digits++;
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9') value = value * 10 + (*r->p++ - '0'), scale *= 10, digits++;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        int esign = 1, e = 0;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-')) esign = *r->p++ == '-' ? -1 : 1;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9') e = e * 10 + (*r->p++ - '0');
        while (e-- > 0) esign > 0 ? (value *= 10) : (scale *= 10);
    }
    if (!digits) r->bad = 1;
    return sign * value / scale;
}

static int is_word(struct reader *r, const char *w) {
    const u8 *p = r->p;
    while (*w) {
        if (p >= r->end || *p++ != (u8)*w++) return 0;
    }
    r->p = p;
    return 1;
}

static void skip_value(struct reader *r, int depth);

static void skip_members(struct reader *r, u8 close, int depth) {
    if (eat(r, close)) return;
    do {
        if (close == '}') {
            read_string(r);
            if (!eat(r, ':')) r->bad = 1;
        }
        skip_value(r, depth + 1);
    } while (!r->bad && eat(r, ','));
    if (!eat(r, close)) r->bad = 1;
}

static void skip_value(struct reader *r, int depth) {
    skip_space(r);
    if (r->bad || r->p >= r->end || depth > 64) {
        r->bad = 1;
        return;
    }
    u8 c = *r->p;
    if (c == '"') read_string(r);
    else if (c == '{') r->p++, skip_members(r, '}', depth);
    else if (c == '[') r->p++, skip_members(r, ']', depth);
    else if (is_word(r, "true") || is_word(r, "false") || is_word(r, "null")) {}
    else read_number(r);
}

static int key_is(struct bytes k, const char *name) {
    u32 i = 0;
    for (; name[i]; i++) {
        if (i >= k.len || k.ptr[i] != (u8)name[i]) return 0;
    }
    return i == k.len;
}

/* One item: adds its price to *sum when it is active and has one. */
static void read_item(struct reader *r, double *sum) {
    int active = 0, priced = 0;
    double price = 0;
    if (!eat(r, '{')) {
        skip_value(r, 1);
        return;
    }
    if (!eat(r, '}')) {
        do {
            struct bytes k = read_string(r);
            if (!eat(r, ':')) r->bad = 1;
            skip_space(r);
            if (key_is(k, "active")) {
                active = is_word(r, "true");
                if (!active) skip_value(r, 2);
            } else if (key_is(k, "price") && r->p < r->end && *r->p != 'n') {
                price = read_number(r), priced = 1;
            } else {
                skip_value(r, 2);
            }
        } while (!r->bad && eat(r, ','));
        if (!eat(r, '}')) r->bad = 1;
    }
    if (active && priced) *sum += price;
}

/* Writes `v` as Lua's tostring does for these sums (up to 14 significant digits, no
 * trailing zeros); returns the length. */
static u32 format_number(double v, u8 *out) {
    u32 n = 0;
    if (v < 0) out[n++] = '-', v = -v;
    unsigned long long whole = (unsigned long long)v;
    double frac = v - (double)whole;
    u8 digits[20];
    int d = 0;
    do digits[d++] = '0' + whole % 10, whole /= 10;
    while (whole);
    while (d) out[n++] = digits[--d];
    int room = 14 - (int)(n - (out[0] == '-'));
    unsigned long long scaled = 0, unit = 1;
    for (int i = 0; i < room; i++) unit *= 10;
    scaled = (unsigned long long)(frac * (double)unit + 0.5);
    if (scaled > 0 && room > 0) {
        int width = room;
        while (scaled % 10 == 0) scaled /= 10, width--;
        out[n++] = '.';
        for (int i = width - 1; i >= 0; i--) {
            out[n + i] = '0' + scaled % 10;
            scaled /= 10;
        }
        n += width;
    }
    return n;
}

EXPORT("json") i64 json(const u8 *input, u32 input_len) {
    struct bytes key = first_key(input);
    i64 packed = get_key(key.ptr, key.len);
    if (packed < 0) return error("ERR no such key");
    struct reader r = {(const u8 *)(size_t)(packed >> 32), 0, 0};
    r.end = r.p + (u32)packed;
    double sum = 0;
    if (!eat(&r, '{')) return error("ERR the document is not a JSON object");
    if (!eat(&r, '}')) {
        do {
            struct bytes k = read_string(&r);
            if (!eat(&r, ':')) r.bad = 1;
            if (key_is(k, "items") && eat(&r, '[')) {
                if (!eat(&r, ']')) {
                    do read_item(&r, &sum);
                    while (!r.bad && eat(&r, ','));
                    if (!eat(&r, ']')) r.bad = 1;
                }
            } else {
                skip_value(&r, 1);
            }
        } while (!r.bad && eat(&r, ','));
        if (!eat(&r, '}')) r.bad = 1;
    }
    if (r.bad) return error("ERR invalid JSON");
    u8 text[32];
    return reply_line(TAG_BULK, text, format_number(sum, text));
}
