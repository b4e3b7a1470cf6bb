/* serve_reload.c - the watcher that reloads changed weights for ct_serve (see
 * serve_reload.h). Polling stat() once a second is simple and works on every file system,
 * network ones included, where inotify does not. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "experiment.h"
#include "serve_reload.h"

#define LOOK_SECONDS 1

/* What tells one version of the file from another. */
typedef struct file_id {
    int err; /* stat's errno; 0: the rest holds */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} file_id;

struct ct_reload {
    const ct_experiment *base;
    char *path;
    FILE *log;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;                /* under lock */
    ct_experiment *ready;     /* loaded, not taken yet; under lock */
    int64_t version;          /* under lock */
    file_id tried;            /* the watcher's own */
};

static file_id identify(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return (file_id){.err = errno ? errno : EIO};
    return (file_id){0, st.st_dev, st.st_ino, st.st_size, st.st_mtim};
}

static bool same(const file_id *a, const file_id *b)
{
    if (a->err || b->err)
        return a->err == b->err;
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

int64_t ct_reload_version(ct_reload *r)
{
    if (!r)
        return 1;
    pthread_mutex_lock(&r->lock);
    int64_t v = r->version;
    pthread_mutex_unlock(&r->lock);
    return v;
}

/* One line; msg names the file or is prefixed with it. */
static void failed(ct_reload *r, const char *msg)
{
    if (!r->log)
        return;
    bool named = strstr(msg, r->path) != NULL;
    fprintf(r->log, "Not reloaded: %s%s%s (still serving version %lld)\n", named ? "" : r->path,
            named ? "" : ": ", msg, (long long)ct_reload_version(r));
    fflush(r->log);
}

/* Loads the file as it is now (id) into a copy of the base, for the model's thread. */
static void load(ct_reload *r, const file_id *id)
{
    ct_error err = {0};
    if (id->err) {
        failed(r, strerror(id->err));
        return;
    }
    ct_experiment *copy = ct_experiment_copy(r->base, &err);
    int rc = copy ? ct_experiment_load_weights(copy, r->path, &err) : -1;
    file_id after = identify(r->path);
    if (!same(&after, id)) { /* written to meanwhile: the next looks load it again */
        ct_experiment_free(copy);
        return;
    }
    if (rc < 0) {
        failed(r, err.msg);
        ct_experiment_free(copy);
        return;
    }
    pthread_mutex_lock(&r->lock);
    ct_experiment *older = r->ready; /* never taken: replaced by the newer file */
    r->ready = copy;
    pthread_mutex_unlock(&r->lock);
    ct_experiment_free(older);
}

/* Looks every LOOK_SECONDS; loads a new identity once it has held for one look. */
static void *watch(void *arg)
{
    ct_reload *r = arg;
    file_id seen = r->tried;
    pthread_mutex_lock(&r->lock);
    while (!r->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += LOOK_SECONDS;
        pthread_cond_timedwait(&r->wake, &r->lock, &until);
        if (r->stop)
            break;
        pthread_mutex_unlock(&r->lock);
        file_id now = identify(r->path);
        if (same(&now, &seen) && !same(&now, &r->tried)) {
            r->tried = now;
            load(r, &now);
        }
        seen = now;
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

ct_reload *ct_reload_start(const ct_experiment *base, const char *path, FILE *log,
                           ct_error *err)
{
    ct_reload *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->base = base;
    r->log = log;
    r->version = 1;
    r->tried = identify(path);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->wake, NULL);
    int e = pthread_create(&r->thread, NULL, watch, r);
    if (e) {
        ct_err(err, CT_ERR_INTERNAL, "cannot start the thread that watches %s: %s", path,
               strerror(e));
        pthread_cond_destroy(&r->wake);
        pthread_mutex_destroy(&r->lock);
        free(r->path);
        free(r);
        return NULL;
    }
    return r;
}

ct_experiment *ct_reload_take(ct_reload *r)
{
    if (!r)
        return NULL;
    pthread_mutex_lock(&r->lock);
    ct_experiment *ex = r->ready;
    r->ready = NULL;
    pthread_mutex_unlock(&r->lock);
    return ex;
}

void ct_reload_done(ct_reload *r, bool serving, const ct_error *why)
{
    if (!serving) {
        failed(r, why->msg);
        return;
    }
    pthread_mutex_lock(&r->lock);
    int64_t v = ++r->version;
    pthread_mutex_unlock(&r->lock);
    if (r->log) {
        fprintf(r->log, "Reloaded %s: now serving version %lld\n", r->path, (long long)v);
        fflush(r->log);
    }
}

void ct_reload_stop(ct_reload *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    ct_experiment_free(r->ready);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r->path);
    free(r);
}
