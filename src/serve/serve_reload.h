/* serve_reload.h - ct_serve's reloading of changed weights (internal to the server).
 *
 * A thread looks at the weights file's identity (device, inode, size, modification time)
 * every second. Once a change has held for one look (so a copy still being written is
 * left to finish), it loads the file into a fresh copy of the experiment there, off the
 * requests' path. The model's thread takes that copy between two batches (ct_reload_take),
 * plans it and says whether it now serves (ct_reload_done), so requests already in a batch
 * finish on the model they started on. A file that cannot be read or does not load (caught
 * in the middle of a write, damaged, another model's weights) leaves the serving model as
 * it is and is logged in one line naming the file and the error; it is tried again when it
 * changes again. A file that changes while it is being loaded is loaded again afterwards.
 *
 * Ownership: ct_reload_start allocates the watcher and ct_reload_stop frees it, with any
 * copy not taken; a copy taken belongs to the model's thread, which frees it with
 * ct_experiment_free once it serves no more. The base experiment stays the caller's. */
#ifndef CT_SERVE_RELOAD_H
#define CT_SERVE_RELOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ctrain.h"

typedef struct ct_reload ct_reload;

/* Watches path (whose weights base holds now); copies are made of base, which must outlive
 * the watcher. log: one line per reload or failed one, or NULL. NULL on error. */
ct_reload *ct_reload_start(const ct_experiment *base, const char *path, FILE *log,
                           ct_error *err);
/* The copy loaded since the last call, or NULL (also for r NULL). The model's thread. */
ct_experiment *ct_reload_take(ct_reload *r);
/* After a copy was taken: it serves now (version one higher, logged), or it could not be
 * planned (why; the version stays, logged). */
void ct_reload_done(ct_reload *r, bool serving, const ct_error *why);
/* The version serving: 1, plus one per reload (1 for r NULL). Any thread. */
int64_t ct_reload_version(ct_reload *r);
/* Stops the watcher (waiting for a load under way) and frees it. r may be NULL. */
void ct_reload_stop(ct_reload *r);

#endif
