/* serve.c - TensorFlow Serving's REST API over HTTP (libmicrohttpd) for one model.
 *
 * libmicrohttpd runs a thread per connection; each predict request is queued, and the
 * thread that called ct_serve runs the model: it takes the queued requests in order, up
 * to max_batch rows together (at least one request), runs them as one batch and hands each
 * its rows back. So requests from several clients are answered together, the model is only
 * ever run from one thread (the one that owns the worker pool), and nothing a client sends
 * can stop the server: every bad request gets a 4xx answer with a message. Changed weights
 * are loaded beside the running model (serve_reload.c) and take over between batches. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "experiment.h"
#include "model.h"
#include "serve_json.h"
#include "serve_reload.h"

static volatile sig_atomic_t stop_asked;

void ct_serve_stop(void) { stop_asked = 1; }

typedef struct job {
    ct_serve_request req;
    float *y[CT_MAX_IO];
    int rc;
    char msg[sizeof(((ct_error *)0)->msg)];
    bool done;
    struct job *next;
} job;

typedef struct server {
    ct_experiment *base;     /* the caller's; the signature's names point into it */
    ct_experiment *ex;       /* the one serving: base or a reload; the model's thread's */
    ct_reload *reload;       /* NULL: the weights are never reloaded */
    ct_serve_sig sig;
    const char *name;
    int64_t max_batch;
    size_t max_body;
    FILE *log;
    pthread_mutex_t lock;
    pthread_cond_t queued, answered;
    job *head, *tail;
    int inflight;            /* requests between their last byte and their answer */
    bool closing;            /* after the drain: new requests get 503 */
    struct MHD_Daemon *daemon;
} server;

typedef struct connection {
    char *body;
    size_t len, cap;
    bool too_big;
    struct timespec started;
} connection;

/* ---- answers ---- */

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, char *json)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(json);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* {"error": msg}, as TensorFlow Serving answers. */
static enum MHD_Result answer_error(struct MHD_Connection *c, unsigned status, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    char *text = o && cJSON_AddStringToObject(o, "error", msg) ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return text ? answer(c, status, text) : MHD_NO;
}

static void log_line(server *s, const char *method, const char *url, unsigned status,
                     int64_t rows, const struct timespec *t0)
{
    if (!s->log)
        return;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (t1.tv_sec - t0->tv_sec) * 1e3 + (t1.tv_nsec - t0->tv_nsec) / 1e6;
    pthread_mutex_lock(&s->lock);
    if (rows)
        fprintf(s->log, "%s %s %u %lld rows %.1f ms\n", method, url, status, (long long)rows, ms);
    else
        fprintf(s->log, "%s %s %u %.1f ms\n", method, url, status, ms);
    fflush(s->log);
    pthread_mutex_unlock(&s->lock);
}

/* GET /v1/models/NAME: the version serving, available. */
static char *status_json(const server *s)
{
    char version[32];
    snprintf(version, sizeof version, "%lld", (long long)ct_reload_version(s->reload));
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "model_version_status");
    cJSON *v = cJSON_CreateObject(), *st = cJSON_CreateObject();
    cJSON_AddStringToObject(v, "version", version);
    cJSON_AddStringToObject(v, "state", "AVAILABLE");
    cJSON_AddStringToObject(st, "error_code", "OK");
    cJSON_AddStringToObject(st, "error_message", "");
    cJSON_AddItemToObject(v, "status", st);
    cJSON_AddItemToArray(list, v);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* A tensor's signature entry: float32 of shape (-1, dims...). */
static cJSON *tensor_info(const char *name, const ct_shape *shape)
{
    cJSON *t = cJSON_CreateObject(), *ts = cJSON_CreateObject();
    cJSON *dims = cJSON_AddArrayToObject(ts, "dim");
    for (int i = -1; i < shape->ndim; i++) {
        cJSON *d = cJSON_CreateObject();
        char size[32];
        snprintf(size, sizeof size, "%lld", i < 0 ? -1LL : (long long)shape->dim[i]);
        cJSON_AddStringToObject(d, "size", size);
        cJSON_AddStringToObject(d, "name", "");
        cJSON_AddItemToArray(dims, d);
    }
    cJSON_AddBoolToObject(ts, "unknown_rank", false);
    cJSON_AddStringToObject(t, "dtype", "DT_FLOAT");
    cJSON_AddItemToObject(t, "tensor_shape", ts);
    cJSON_AddStringToObject(t, "name", name);
    return t;
}

/* GET /v1/models/NAME/metadata: the serving_default signature. */
static char *metadata_json(const server *s)
{
    char version[32];
    snprintf(version, sizeof version, "%lld", (long long)ct_reload_version(s->reload));
    cJSON *o = cJSON_CreateObject(), *spec = cJSON_AddObjectToObject(o, "model_spec");
    cJSON_AddStringToObject(spec, "name", s->name);
    cJSON_AddStringToObject(spec, "signature_name", "");
    cJSON_AddStringToObject(spec, "version", version);
    cJSON *defs = cJSON_AddObjectToObject(cJSON_AddObjectToObject(
                                              cJSON_AddObjectToObject(o, "metadata"),
                                              "signature_def"),
                                          "signature_def");
    cJSON *sd = cJSON_AddObjectToObject(defs, "serving_default");
    cJSON *ins = cJSON_AddObjectToObject(sd, "inputs"), *outs = cJSON_AddObjectToObject(sd, "outputs");
    for (int k = 0; k < s->sig.ninputs; k++)
        cJSON_AddItemToObject(ins, s->sig.input_names[k],
                              tensor_info(s->sig.input_names[k], &s->sig.input_shapes[k]));
    for (int k = 0; k < s->sig.noutputs; k++)
        cJSON_AddItemToObject(outs, s->sig.output_names[k],
                              tensor_info(s->sig.output_names[k], &s->sig.output_shapes[k]));
    cJSON_AddStringToObject(sd, "method_name", "tensorflow/serving/predict");
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* ---- the queue ---- */

static void job_free(job *j)
{
    ct_serve_request_free(&j->req);
    for (int k = 0; k < CT_MAX_IO; k++)
        free(j->y[k]);
}

/* Queues j and waits for its answer (from the model's thread). */
static int run_job(server *s, job *j)
{
    pthread_mutex_lock(&s->lock);
    if (s->closing) {
        pthread_mutex_unlock(&s->lock);
        snprintf(j->msg, sizeof j->msg, "the server is shutting down");
        return -2;
    }
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    pthread_cond_signal(&s->queued);
    while (!j->done)
        pthread_cond_wait(&s->answered, &s->lock);
    pthread_mutex_unlock(&s->lock);
    return j->rc;
}

/* Runs the jobs first..last (rows in all) as one batch. */
static void run_batch(server *s, job *first, int64_t rows)
{
    const ct_serve_sig *sig = &s->sig;
    float *x[CT_MAX_IO] = {0}, *y[CT_MAX_IO] = {0};
    bool alone = first->next == NULL, ok = true;
    for (int k = 0; k < sig->ninputs; k++)
        ok &= (x[k] = alone ? first->req.x[k]
                            : malloc((size_t)(rows * ct_shape_size(&sig->input_shapes[k])) *
                                     sizeof(float))) != NULL;
    for (int k = 0; k < sig->noutputs; k++)
        ok &= (y[k] = malloc((size_t)(rows * ct_shape_size(&sig->output_shapes[k]) + 1) *
                             sizeof(float))) != NULL;
    int64_t at = 0;
    for (job *j = first; ok && !alone && j; at += j->req.rows, j = j->next)
        for (int k = 0; k < sig->ninputs; k++) {
            int64_t size = ct_shape_size(&sig->input_shapes[k]);
            memcpy(x[k] + at * size, j->req.x[k], (size_t)(j->req.rows * size) * sizeof(float));
        }
    ct_error err = {0};
    int rc = ok ? ct_experiment_predict_arrays(s->ex, rows, (const float *const *)x, y, &err)
                : ct_err(&err, CT_ERR_NOMEM, "out of memory for %lld rows", (long long)rows);
    at = 0;
    for (job *j = first; j; at += j->req.rows, j = j->next) {
        j->rc = rc;
        snprintf(j->msg, sizeof j->msg, "%s", err.msg);
        for (int k = 0; rc == 0 && k < sig->noutputs; k++) {
            int64_t size = ct_shape_size(&sig->output_shapes[k]);
            j->y[k] = malloc((size_t)(j->req.rows * size + 1) * sizeof(float));
            if (!j->y[k]) {
                j->rc = -1;
                snprintf(j->msg, sizeof j->msg, "out of memory for the answer");
                break;
            }
            memcpy(j->y[k], y[k] + at * size, (size_t)(j->req.rows * size) * sizeof(float));
        }
    }
    for (int k = 0; k < sig->ninputs && !alone; k++)
        free(x[k]);
    for (int k = 0; k < sig->noutputs; k++)
        free(y[k]);
}

/* Takes the queue's head jobs, up to max_batch rows (at least one job), off the queue. */
static job *take(server *s, int64_t *rows)
{
    job *first = s->head, *last = first;
    *rows = first->req.rows;
    while (last->next && *rows + last->next->req.rows <= s->max_batch) {
        last = last->next;
        *rows += last->req.rows;
    }
    s->head = last->next;
    if (!s->head)
        s->tail = NULL;
    last->next = NULL;
    return first;
}

/* Between batches: a reloaded copy, planned here (this thread owns the worker pool), takes
 * over; the experiment it replaces is freed unless it is the caller's. */
static void swap_in(server *s)
{
    ct_experiment *fresh = ct_reload_take(s->reload);
    if (!fresh)
        return;
    ct_error err = {0};
    if (ct_experiment_predict_arrays(fresh, 0, (const float *const[CT_MAX_IO]){0},
                                     (float *const[CT_MAX_IO]){0}, &err) < 0) {
        ct_reload_done(s->reload, false, &err);
        ct_experiment_free(fresh);
        return;
    }
    ct_experiment *old = s->ex;
    s->ex = fresh; /* before the version shows, so a client that sees it gets this model */
    ct_reload_done(s->reload, true, NULL);
    if (old != s->base)
        ct_experiment_free(old);
}

/* The model's thread: batches until asked to stop and, once stopping, until the requests
 * already received are answered (up to a deadline). */
static void dispatch(server *s)
{
    double quiet_since = -1, stop_at = -1;
    for (;;) {
        swap_in(s);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        double t = now.tv_sec + now.tv_nsec / 1e9;
        pthread_mutex_lock(&s->lock);
        if (stop_asked && stop_at < 0) {
            stop_at = t + 10.0;
            MHD_quiesce_daemon(s->daemon); /* no new connections */
        }
        if (!s->head) {
            bool idle = s->inflight == 0;
            quiet_since = idle ? (quiet_since < 0 ? t : quiet_since) : -1;
            if (stop_at >= 0 && ((idle && t - quiet_since > 0.2) || t > stop_at)) {
                s->closing = true;
                pthread_mutex_unlock(&s->lock);
                return;
            }
            struct timespec until = now;
            until.tv_nsec += 50 * 1000000L;
            if (until.tv_nsec >= 1000000000L)
                until.tv_sec++, until.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&s->queued, &s->lock, &until);
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        int64_t rows;
        job *batch = take(s, &rows);
        pthread_mutex_unlock(&s->lock);
        run_batch(s, batch, rows);
        pthread_mutex_lock(&s->lock);
        for (job *j = batch, *next; j; j = next) {
            next = j->next;
            j->done = true;
        }
        pthread_cond_broadcast(&s->answered);
        pthread_mutex_unlock(&s->lock);
    }
}

/* ---- requests ---- */

static enum MHD_Result predict(server *s, struct MHD_Connection *c, connection *cn,
                               const char *url)
{
    job j = {0};
    ct_error err = {0};
    unsigned status = MHD_HTTP_OK;
    enum MHD_Result rc;
    if (ct_serve_parse(&s->sig, cn->body ? cn->body : "", cn->len, &j.req, &err) < 0) {
        status = err.code == CT_ERR_NOMEM ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_BAD_REQUEST;
        rc = answer_error(c, status, err.msg);
    } else {
        pthread_mutex_lock(&s->lock);
        s->inflight++;
        pthread_mutex_unlock(&s->lock);
        int ran = run_job(s, &j);
        char *text = ran == 0 ? ct_serve_format(&s->sig, j.req.columnar, j.req.rows,
                                                (const float *const *)j.y)
                              : NULL;
        status = ran == -2 ? MHD_HTTP_SERVICE_UNAVAILABLE
                 : text    ? MHD_HTTP_OK
                           : MHD_HTTP_INTERNAL_SERVER_ERROR;
        rc = text ? answer(c, status, text)
                  : answer_error(c, status, ran == 0 ? "out of memory for the answer" : j.msg);
        pthread_mutex_lock(&s->lock);
        s->inflight--;
        pthread_mutex_unlock(&s->lock);
    }
    log_line(s, "POST", url, status, j.req.rows, &cn->started);
    job_free(&j);
    return rc;
}

/* /v1/models/NAME[/versions/V][:predict | /metadata]: which one, or -1 (no such model:
 * 404), -2 (no such path: 404), -3 (a version not serving: 404). */
enum { ROUTE_STATUS, ROUTE_METADATA, ROUTE_PREDICT };

static int route(const server *s, const char *url)
{
    static const char prefix[] = "/v1/models/", versions[] = "/versions/";
    if (strncmp(url, prefix, sizeof prefix - 1))
        return -2;
    const char *name = url + sizeof prefix - 1, *end = name + strcspn(name, "/:");
    if ((size_t)(end - name) != strlen(s->name) || strncmp(name, s->name, (size_t)(end - name)))
        return -1;
    if (!strncmp(end, versions, sizeof versions - 1)) {
        char *after;
        const char *digits = end + sizeof versions - 1;
        long long v = *digits >= '0' && *digits <= '9' ? strtoll(digits, &after, 10) : -1;
        if (v < 0)
            return -2;
        if (v != ct_reload_version(s->reload))
            return -3;
        end = after;
    }
    if (!*end)
        return ROUTE_STATUS;
    if (!strcmp(end, "/metadata"))
        return ROUTE_METADATA;
    return !strcmp(end, ":predict") ? ROUTE_PREDICT : -2;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    server *s = cls;
    connection *cn = *con_cls;
    if (!cn) { /* the headers: set up for the body */
        if (!(cn = calloc(1, sizeof *cn)))
            return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &cn->started);
        *con_cls = cn;
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        if (cn->too_big || cn->len + *upload_size > s->max_body) {
            cn->too_big = true;
        } else {
            if (cn->len + *upload_size + 1 > cn->cap) {
                size_t cap = cn->cap ? cn->cap : 65536;
                while (cap < cn->len + *upload_size + 1)
                    cap *= 2;
                char *p = realloc(cn->body, cap);
                if (!p)
                    return MHD_NO;
                cn->body = p;
                cn->cap = cap;
            }
            memcpy(cn->body + cn->len, upload, *upload_size);
            cn->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    int r = route(s, url);
    bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
    char msg[600];
    enum MHD_Result rc;
    unsigned status = MHD_HTTP_OK;
    if (r == -1) {
        snprintf(msg, sizeof msg, "Servable not found for request: no model '%.*s'; this "
                 "server has '%s'", (int)strcspn(url + 11, "/:"), url + 11, s->name);
        rc = answer_error(c, status = MHD_HTTP_NOT_FOUND, msg);
    } else if (r == -3) {
        const char *v = url + strlen("/v1/models//versions/") + strlen(s->name);
        int n = (int)strcspn(v, "/:");
        snprintf(msg, sizeof msg, "Servable not found for request: version %.*s of '%s' is "
                 "not serving; version %lld is", n < 30 ? n : 30, v, s->name,
                 (long long)ct_reload_version(s->reload));
        rc = answer_error(c, status = MHD_HTTP_NOT_FOUND, msg);
    } else if (r == -2) {
        snprintf(msg, sizeof msg, "no such path: %.200s (try /v1/models/%s, /metadata or "
                 ":predict)", url, s->name);
        rc = answer_error(c, status = MHD_HTTP_NOT_FOUND, msg);
    } else if ((r == ROUTE_PREDICT && !post) || (r != ROUTE_PREDICT && !get)) {
        snprintf(msg, sizeof msg, "%.200s takes %s, not %.20s", url,
                 r == ROUTE_PREDICT ? "POST" : "GET", method);
        rc = answer_error(c, status = MHD_HTTP_METHOD_NOT_ALLOWED, msg);
    } else if (cn->too_big) {
        snprintf(msg, sizeof msg, "the body is larger than the %zu bytes this server takes "
                 "(ctrain serve --max-body)", s->max_body);
        rc = answer_error(c, status = MHD_HTTP_CONTENT_TOO_LARGE, msg);
    } else if (r == ROUTE_PREDICT) {
        return predict(s, c, cn, url);
    } else {
        char *text = r == ROUTE_STATUS ? status_json(s) : metadata_json(s);
        rc = text ? answer(c, status, text)
                  : answer_error(c, status = MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    }
    log_line(s, method, url, status, 0, &cn->started);
    return rc;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode why)
{
    (void)cls, (void)c, (void)why;
    connection *cn = *con_cls;
    if (cn) {
        free(cn->body);
        free(cn);
        *con_cls = NULL;
    }
}

/* ---- the server ---- */

static void signature(const ct_experiment *ex, ct_serve_sig *sig)
{
    const ct_model *m = ex->model;
    sig->ninputs = m->ninputs;
    sig->noutputs = m->noutputs;
    for (int k = 0; k < m->ninputs; k++) {
        sig->input_names[k] = m->input_names[k];
        sig->input_shapes[k] = m->input_shapes[k];
        sig->scale[k] = ex->scale[k];
    }
    for (int k = 0; k < m->noutputs; k++) {
        sig->output_names[k] = m->output_names[k];
        sig->output_shapes[k] = *ct_model_output_shape_at(m, k);
    }
}

int ct_serve(ct_experiment *ex, const ct_serve_options *opt, ct_error *err)
{
    server s = {.base = ex, .ex = ex, .name = opt->name ? opt->name : ex->name,
                .max_batch = opt->max_batch > 0 ? opt->max_batch : ex->batch_size,
                .max_body = opt->max_body ? opt->max_body : (size_t)64 << 20, .log = opt->log};
    signature(ex, &s.sig);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt->port)};
    if (inet_pton(AF_INET, opt->host ? opt->host : "127.0.0.1", &addr.sin_addr) != 1)
        return ct_err(err, CT_ERR_USAGE, "--host '%s' is not an IPv4 address",
                      opt->host ? opt->host : "");
    /* The model is planned before the first request, so a model too large fails here. */
    if (ct_experiment_predict_arrays(ex, 0, (const float *const[CT_MAX_IO]){0},
                                     (float *const[CT_MAX_IO]){0}, err) < 0)
        return -1;
    if (opt->reload && !(s.reload = ct_reload_start(ex, opt->reload, opt->reload_log, err)))
        return -1;
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.queued, NULL);
    pthread_cond_init(&s.answered, NULL);
    stop_asked = 0;
    s.daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
            MHD_USE_ERROR_LOG, 0,
        NULL, NULL, handle, &s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, completed, &s, MHD_OPTION_CONNECTION_LIMIT, 512u,
        MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
    int rc = 0;
    if (!s.daemon) {
        rc = ct_err(err, CT_ERR_IO, "cannot listen on %s:%d: %s", opt->host ? opt->host
                    : "127.0.0.1", opt->port, strerror(errno));
    } else {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(s.daemon,
                                                               MHD_DAEMON_INFO_BIND_PORT);
        if (opt->ready)
            opt->ready(info ? info->port : opt->port, s.name, opt->ready_ctx);
        dispatch(&s);
        MHD_stop_daemon(s.daemon);
    }
    ct_reload_stop(s.reload);
    if (s.ex != s.base)
        ct_experiment_free(s.ex);
    pthread_cond_destroy(&s.answered);
    pthread_cond_destroy(&s.queued);
    pthread_mutex_destroy(&s.lock);
    return rc;
}
