/* loadgen.c - an HTTP/1.1 load generator for bench/serve.sh: N clients, each on its own
 * thread and its own keep-alive connection, send POST requests back to back (the next as
 * soon as the answer is in) for a fixed time or count, and every request's latency is kept.
 *
 *   loadgen --url http://127.0.0.1:PORT/PATH --body FILE [--clients N] [--seconds S |
 *           --requests N] [--warmup S] [--expect TEXT]
 *
 * FILE holds one request body per line; client c starts at line c and goes round them.
 * Answers other than 200 with a Content-Length body, or without TEXT in the body, count as
 * errors (the first is shown on stderr); a broken connection is an error and is opened
 * again. Requests answered during the first --warmup seconds are not counted. Prints one
 * line: clients, requests, errors, seconds, req/s and the p50, p99, mean and max latency.
 *
 * --requests N: each client sends N requests, answered or not.
 * Only numeric IPv4 addresses: the benchmark stays on 127.0.0.1. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct request {
    char *text; /* headers and body */
    size_t len;
} request;

typedef struct setup {
    struct sockaddr_in addr;
    request *reqs;
    int nreqs;
    const char *expect;
    double start, counted_from, until; /* seconds on CLOCK_MONOTONIC */
    long per_client;                   /* requests each client sends (0: until `until`) */
} setup;

typedef struct client {
    const setup *st;
    int id;
    double *lat; /* seconds, one per counted request */
    long n, cap, errors;
    char first_error[256];
} client;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void fail(client *c, const char *fmt, const char *what)
{
    c->errors++;
    if (!c->first_error[0])
        snprintf(c->first_error, sizeof c->first_error, fmt, what);
}

static int open_connection(const setup *st)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    struct timeval limit = {30, 0}; /* a server that stops answering is an error, not a hang */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    if (connect(fd, (const struct sockaddr *)&st->addr, sizeof st->addr) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one answer into *buf (grown as needed): its status, or -1 (connection broken or a
 * framing loadgen does not read). *keep: whether the server keeps the connection. */
static int read_answer(int fd, char **buf, size_t *cap, bool *keep, const char **body)
{
    size_t len = 0, want = 0;
    char *end = NULL;
    for (;;) {
        if (len + 1 >= *cap) {
            char *p = realloc(*buf, *cap * 2);
            if (!p)
                return -1;
            *buf = p;
            *cap *= 2;
        }
        ssize_t r = recv(fd, *buf + len, *cap - len - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        len += (size_t)r;
        (*buf)[len] = '\0';
        if (!end && (end = strstr(*buf, "\r\n\r\n"))) {
            const char *cl = strcasestr(*buf, "\r\ncontent-length:");
            if (!cl || cl > end)
                return -1; /* chunked or close-delimited: not what these servers send */
            want = (size_t)(end + 4 - *buf) + strtoul(cl + 17, NULL, 10);
            const char *conn = strcasestr(*buf, "\r\nconnection: close");
            *keep = !conn || conn > end;
        }
        if (end && len >= want) {
            *body = end + 4;
            return len == want ? atoi(*buf + 9) : -1;
        }
    }
}

static void record(client *c, double seconds)
{
    if (c->n == c->cap) {
        long cap = c->cap ? 2 * c->cap : 4096;
        double *p = realloc(c->lat, (size_t)cap * sizeof *p);
        if (!p) {
            fail(c, "%s", "out of memory for the latencies");
            return;
        }
        c->lat = p;
        c->cap = cap;
    }
    c->lat[c->n++] = seconds;
}

/* One request and its answer on *fd (opened again when needed); false when the connection
 * could not be opened at all. */
static bool one_request(client *c, int *fd, const request *q, char **buf, size_t *cap)
{
    const setup *st = c->st;
    if (*fd < 0 && (*fd = open_connection(st)) < 0) {
        fail(c, "cannot connect: %s", strerror(errno));
        return false;
    }
    double t0 = now();
    bool keep = true;
    const char *body = NULL;
    int status = send_all(*fd, q->text, q->len) < 0 ? -1 : read_answer(*fd, buf, cap, &keep, &body);
    double t1 = now();
    if (status != 200 || (st->expect && !strstr(body, st->expect))) {
        if (status < 0)
            fail(c, "%s", "connection broken or an answer without Content-Length");
        else {
            char line[240];
            snprintf(line, sizeof line, "%.*s: %.160s", (int)strcspn(*buf, "\r"), *buf, body);
            fail(c, "answer %s", line);
        }
        keep = false;
    } else if (t1 >= st->counted_from && (st->per_client || t1 <= st->until)) {
        record(c, t1 - t0);
    }
    if (!keep) {
        close(*fd);
        *fd = -1;
    }
    return true;
}

static void *run_client(void *arg)
{
    client *c = arg;
    const setup *st = c->st;
    size_t cap = 65536;
    char *buf = malloc(cap);
    int fd = -1;
    for (long i = 0; buf; i++) {
        if (st->per_client ? i >= st->per_client : now() >= st->until)
            break;
        if (!one_request(c, &fd, &st->reqs[(c->id + i) % st->nreqs], &buf, &cap))
            break;
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Reads FILE's lines into requests for host:port/path. */
static int load_bodies(const char *file, const char *hostport, const char *path, setup *st)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "loadgen: cannot read %s: %s\n", file, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t n = 0;
    ssize_t len;
    while ((len = getline(&line, &n, f)) > 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (!len)
            continue;
        request *r = realloc(st->reqs, (size_t)(st->nreqs + 1) * sizeof *r);
        if (!r)
            break;
        st->reqs = r;
        r = &st->reqs[st->nreqs++];
        r->len = (size_t)asprintf(&r->text, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: "
                                  "application/json\r\nContent-Length: %zd\r\n\r\n%s",
                                  path, hostport, len, line);
    }
    free(line);
    fclose(f);
    if (!st->nreqs)
        fprintf(stderr, "loadgen: %s holds no request body (one per line)\n", file);
    return st->nreqs ? 0 : -1;
}

/* http://A.B.C.D:PORT/PATH into the address, "A.B.C.D:PORT" and the path. */
static int parse_url(const char *url, setup *st, char *hostport, size_t n, const char **path)
{
    unsigned port;
    char host[64];
    int used = 0;
    if (strncmp(url, "http://", 7) || sscanf(url + 7, "%63[0-9.]:%u%n", host, &port, &used) != 2 ||
        port < 1 || port > 65535 || url[7 + used] != '/' ||
        inet_pton(AF_INET, host, &st->addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --url wants http://A.B.C.D:PORT/PATH, not '%s'\n", url);
        return -1;
    }
    st->addr.sin_family = AF_INET;
    st->addr.sin_port = htons((uint16_t)port);
    snprintf(hostport, n, "%s:%u", host, port);
    *path = url + 7 + used;
    return 0;
}

static void usage(const char *why, const char *what)
{
    fprintf(stderr, "loadgen: %s%s\nusage: loadgen --url http://127.0.0.1:PORT/PATH --body FILE "
            "[--clients N] [--seconds S | --requests N] [--warmup S] [--expect TEXT]\n", why, what);
    exit(2);
}

/* Prints the summary of every client's counted requests. */
static void report(client *cl, int nclients, double seconds)
{
    long total = 0, errors = 0;
    for (int i = 0; i < nclients; i++)
        total += cl[i].n, errors += cl[i].errors;
    double *all = malloc((size_t)(total ? total : 1) * sizeof *all), sum = 0;
    if (!all) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(1);
    }
    long k = 0;
    for (int i = 0; i < nclients; i++)
        for (long j = 0; j < cl[i].n; j++)
            sum += all[k++] = cl[i].lat[j];
    qsort(all, (size_t)total, sizeof *all, by_value);
    /* nearest rank */
#define PCT(p) (total ? all[(long)((p) / 100.0 * (double)total + 0.999999) - 1] * 1e3 : 0.0)
    printf("clients=%d requests=%ld errors=%ld seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f "
           "mean_ms=%.3f max_ms=%.3f\n", nclients, total, errors, seconds, total / seconds,
           PCT(50), PCT(99), total ? sum / total * 1e3 : 0.0, total ? all[total - 1] * 1e3 : 0.0);
#undef PCT
    for (int i = 0; i < nclients; i++)
        if (cl[i].first_error[0]) {
            fprintf(stderr, "loadgen: client %d: %s\n", i, cl[i].first_error);
            break;
        }
    free(all);
}

static double number(const char *opt, const char *text, double lo, double hi)
{
    char *end;
    double v = strtod(text, &end);
    if (!*text || *end || !(v >= lo && v <= hi)) {
        char why[160];
        snprintf(why, sizeof why, "%s takes a number from %g to %g, not ", opt, lo, hi);
        usage(why, text);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *body = NULL, *path;
    int nclients = 1;
    double seconds = 0, warmup = 0;
    setup st = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            usage("", "");
        if (!v)
            usage("a value is missing after ", a);
        if (!strcmp(a, "--url")) url = v;
        else if (!strcmp(a, "--body")) body = v;
        else if (!strcmp(a, "--expect")) st.expect = v;
        else if (!strcmp(a, "--clients")) nclients = (int)number(a, v, 1, 4096);
        else if (!strcmp(a, "--seconds")) seconds = number(a, v, 0.001, 86400);
        else if (!strcmp(a, "--requests")) st.per_client = (long)number(a, v, 1, 1e9);
        else if (!strcmp(a, "--warmup")) warmup = number(a, v, 0, 3600);
        else usage("unknown argument ", a);
        i++;
    }
    char hostport[96];
    if (!url || !body)
        usage("--url and --body are needed", "");
    if (!seconds == !st.per_client)
        usage("give one of --seconds and --requests", "");
    if (parse_url(url, &st, hostport, sizeof hostport, &path) < 0 ||
        load_bodies(body, hostport, path, &st) < 0)
        return 2;
    client *cl = calloc((size_t)nclients, sizeof *cl);
    pthread_t *tid = calloc((size_t)nclients, sizeof *tid);
    if (!cl || !tid)
        return fprintf(stderr, "loadgen: out of memory\n"), 1;
    st.start = now();
    st.counted_from = st.start + warmup;
    st.until = st.counted_from + seconds;
    int started = 0;
    for (; started < nclients; started++) {
        cl[started] = (client){.st = &st, .id = started};
        if (pthread_create(&tid[started], NULL, run_client, &cl[started]) != 0) {
            fprintf(stderr, "loadgen: cannot start client %d\n", started);
            break;
        }
    }
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    double counted = st.per_client ? now() - st.counted_from : seconds;
    report(cl, started, counted > 0 ? counted : 1e-9);
    long errors = 0;
    for (int i = 0; i < started; i++)
        errors += cl[i].errors, free(cl[i].lat);
    for (int i = 0; i < st.nreqs; i++)
        free(st.reqs[i].text);
    free(st.reqs);
    free(cl);
    free(tid);
    return started == nclients && !errors ? 0 : 1;
}
