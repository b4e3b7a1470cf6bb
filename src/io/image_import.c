/* image_import.c - a folder tree of images, one sub-folder per class, into
 * `group`/images (uint8, N x H x W x C), `group`/labels (int32 class ids) and
 * `group`/classes (the sub-folders' names by id), as Keras's image_dataset_from_directory
 * reads such a tree: classes in sorted order, files in sorted order within each, then the
 * whole list shuffled (with a fixed seed, so an import is reproducible and a validation
 * split taken from the end holds every class).
 *
 * PNG through libpng's simplified API and JPEG through libjpeg, recognised by their first
 * bytes; other files with an image extension (.bmp, .gif) are refused by name, anything
 * else is skipped and counted. Images are decoded one at a time and written in blocks of
 * rows, so a tree larger than memory imports in the memory of one block. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>

#include "ctrain.h"
#include "guard.h"
#include "h5util.h"
#include "import.h"
#include "rng.h"

#define BLOCK_ROWS 256       /* images decoded, then written, at a time */
#define MAX_SIDE 16384       /* a bound on an image's height and width */

typedef struct entry {
    char *path;
    int32_t label;
} entry;

typedef struct tree {
    char **classes;
    int nclasses;
    entry *files;
    int64_t nfiles, cap;
    int64_t skipped;         /* files that are not images */
} tree;

/* A decoded image: h x w x c bytes, owned. */
typedef struct image {
    int64_t h, w;
    int c;
    uint8_t *px;
} image;

static void tree_free(tree *t)
{
    for (int i = 0; i < t->nclasses; i++)
        free(t->classes[i]);
    free(t->classes);
    for (int64_t i = 0; i < t->nfiles; i++)
        free(t->files[i].path);
    free(t->files);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in folder path (no . or ..), sorted; dirs_only keeps sub-folders, else files. */
static int list_dir(const char *path, bool dirs_only, char ***out, int64_t *n, ct_error *err)
{
    DIR *d = opendir(path);
    if (!d)
        return ct_err(err, CT_ERR_IO, "cannot read the folder %s: %s", path, strerror(errno));
    char **names = NULL;
    int64_t count = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue; /* ., .. and hidden files, as Keras's listing skips them */
        char full[4200];
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        struct stat st;
        if (stat(full, &st) != 0 || (dirs_only ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)))
            continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(names, (size_t)cap * sizeof *p);
            if (!p) {
                rc = ct_err(err, CT_ERR_NOMEM, "out of memory");
                break;
            }
            names = p;
        }
        if (!(names[count] = strdup(e->d_name)))
            rc = ct_err(err, CT_ERR_NOMEM, "out of memory");
        else
            count++;
    }
    closedir(d);
    if (names)
        qsort(names, (size_t)count, sizeof *names, by_name);
    *out = names;
    *n = count;
    return rc;
}

static void free_names(char **names, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* What a file's extension says it is: 1 an image we read, 2 an image format we do not,
 * 0 not an image (skipped). */
static int image_kind(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    if (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"))
        return 1;
    if (!strcasecmp(dot, ".bmp") || !strcasecmp(dot, ".gif"))
        return 2;
    return 0;
}

static int add_file(tree *t, const char *folder, const char *name, int label, ct_error *err)
{
    if (t->nfiles == t->cap) {
        int64_t cap = t->cap ? 2 * t->cap : 1024;
        entry *p = realloc(t->files, (size_t)cap * sizeof *p);
        if (!p)
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
        t->files = p;
        t->cap = cap;
    }
    entry *e = &t->files[t->nfiles];
    size_t n = strlen(folder) + strlen(name) + 2;
    if (!(e->path = malloc(n)))
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    snprintf(e->path, n, "%s/%s", folder, name);
    e->label = label;
    t->nfiles++;
    return 0;
}

/* One class's folder: its image files, in sorted order. */
static int scan_class(tree *t, const char *root, int label, ct_error *err)
{
    char folder[4200];
    snprintf(folder, sizeof folder, "%s/%s", root, t->classes[label]);
    char **names;
    int64_t n, before = t->nfiles;
    int rc = list_dir(folder, false, &names, &n, err);
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        int kind = image_kind(names[i]);
        if (kind == 2)
            rc = ct_err(err, CT_ERR_DATA, "%s/%s: BMP and GIF images are not read; convert "
                        "them to PNG", folder, names[i]);
        else if (kind == 1)
            rc = add_file(t, folder, names[i], label, err);
        else
            t->skipped++;
    }
    free_names(names, n);
    if (rc == 0 && t->nfiles == before)
        rc = ct_err(err, CT_ERR_DATA, "%s holds no PNG or JPEG images: every sub-folder of %s "
                    "is a class and needs at least one", folder, root);
    return rc;
}

static int scan_tree(const char *root, tree *t, ct_error *err)
{
    char **names;
    int64_t n;
    if (list_dir(root, true, &names, &n, err) < 0)
        return -1;
    t->classes = names;
    t->nclasses = (int)n;
    if (n == 0)
        return ct_err(err, CT_ERR_DATA, "%s has no sub-folders: import-images reads one "
                      "sub-folder per class, named after it, holding its images", root);
    if (n > INT32_MAX / 2)
        return ct_err(err, CT_ERR_DATA, "%s has too many sub-folders", root);
    for (int c = 0; c < t->nclasses; c++)
        if (scan_class(t, root, c, err) < 0)
            return -1;
    return 0;
}

/* ---- decoding ---- */

static int decode_png(const char *path, int channels, image *im, ct_error *err)
{
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&p, path))
        return ct_err(err, CT_ERR_DATA, "%s: not a readable PNG image: %s", path, p.message);
    p.format = channels == 1 ? PNG_FORMAT_GRAY : channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
    if (p.width > MAX_SIDE || p.height > MAX_SIDE) {
        png_image_free(&p);
        return ct_err(err, CT_ERR_DATA, "%s: %ux%u pixels is larger than %d on a side", path,
                      p.width, p.height, MAX_SIDE);
    }
    im->h = p.height;
    im->w = p.width;
    im->c = channels;
    im->px = malloc(PNG_IMAGE_SIZE(p));
    if (!im->px) {
        png_image_free(&p);
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    /* Transparency over black: the pixels as stored, without their alpha. */
    png_color black = {0, 0, 0};
    if (!png_image_finish_read(&p, channels == 4 ? NULL : &black, im->px, 0, NULL))
        return ct_err(err, CT_ERR_DATA, "%s: a damaged PNG image: %s", path, p.message);
    return 0;
}

typedef struct jpeg_fail {
    struct jpeg_error_mgr mgr;
    jmp_buf back;
    char msg[JMSG_LENGTH_MAX];
} jpeg_fail;

static void jpeg_fail_exit(j_common_ptr cinfo)
{
    jpeg_fail *f = (jpeg_fail *)cinfo->err;
    cinfo->err->format_message(cinfo, f->msg);
    longjmp(f->back, 1);
}

static void jpeg_quiet(j_common_ptr cinfo, int level) { (void)cinfo, (void)level; }

/* The decompressor's state lives here, outside decode_jpeg's frame, since longjmp may
 * return into it. */
typedef struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    jpeg_fail fail;
    FILE *f;
    uint8_t *row;
} jpeg_job;

static int jpeg_rows(jpeg_job *j, int channels, image *im)
{
    struct jpeg_decompress_struct *ci = &j->cinfo;
    jpeg_read_header(ci, TRUE);
    ci->out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(ci);
    if (ci->output_width > MAX_SIDE || ci->output_height > MAX_SIDE)
        return 1;
    im->h = ci->output_height;
    im->w = ci->output_width;
    im->c = channels;
    int got = ci->output_components;
    im->px = malloc((size_t)(im->h * im->w * channels));
    j->row = malloc((size_t)im->w * (size_t)got);
    if (!im->px || !j->row)
        return 2;
    while (ci->output_scanline < ci->output_height) {
        int64_t y = ci->output_scanline;
        JSAMPROW r = j->row;
        jpeg_read_scanlines(ci, &r, 1);
        uint8_t *dst = im->px + y * im->w * channels;
        for (int64_t x = 0; x < im->w; x++)
            for (int k = 0; k < channels; k++)
                dst[x * channels + k] = k < got ? j->row[x * got + k] : 255; /* opaque */
    }
    jpeg_finish_decompress(ci);
    return 0;
}

static int decode_jpeg(const char *path, int channels, image *im, ct_error *err)
{
    jpeg_job *j = calloc(1, sizeof *j);
    if (!j)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    int rc = 0;
    if (!(j->f = fopen(path, "rb")))
        rc = ct_err(err, CT_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    j->cinfo.err = jpeg_std_error(&j->fail.mgr);
    j->fail.mgr.error_exit = jpeg_fail_exit;
    j->fail.mgr.emit_message = jpeg_quiet; /* warnings: the image still decodes */
    if (rc == 0 && setjmp(j->fail.back)) {
        rc = ct_err(err, CT_ERR_DATA, "%s: not a readable JPEG image: %s", path, j->fail.msg);
    } else if (rc == 0) {
        jpeg_create_decompress(&j->cinfo);
        jpeg_stdio_src(&j->cinfo, j->f);
        int r = jpeg_rows(j, channels, im);
        if (r == 1)
            rc = ct_err(err, CT_ERR_DATA, "%s: larger than %d pixels on a side", path, MAX_SIDE);
        else if (r == 2)
            rc = ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    jpeg_destroy_decompress(&j->cinfo);
    if (j->f)
        fclose(j->f);
    free(j->row);
    free(j);
    return rc;
}

/* By the first bytes, whatever the extension says. */
static int decode(const char *path, int channels, image *im, ct_error *err)
{
    uint8_t magic[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return ct_err(err, CT_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t n = fread(magic, 1, sizeof magic, f);
    fclose(f);
    memset(im, 0, sizeof *im);
    if (n >= 8 && !memcmp(magic, "\x89PNG\r\n\x1a\n", 8))
        return decode_png(path, channels, im, err);
    if (n >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff)
        return decode_jpeg(path, channels, im, err);
    return ct_err(err, CT_ERR_DATA, "%s is neither a PNG nor a JPEG image (by its first bytes)",
                  path);
}

/* Bilinear resizing with half-pixel centres (TensorFlow's tf.image.resize, which Keras's
 * image_dataset_from_directory uses, without antialiasing), rounded to uint8. */
static void resize_into(const image *im, int64_t h, int64_t w, uint8_t *out)
{
    double sy = (double)im->h / (double)h, sx = (double)im->w / (double)w;
    for (int64_t y = 0; y < h; y++) {
        double fy = fmax(0.0, ((double)y + 0.5) * sy - 0.5);
        int64_t y0 = (int64_t)fy, y1 = y0 + 1 < im->h ? y0 + 1 : im->h - 1;
        double ty = fy - (double)y0;
        for (int64_t x = 0; x < w; x++) {
            double fx = fmax(0.0, ((double)x + 0.5) * sx - 0.5);
            int64_t x0 = (int64_t)fx, x1 = x0 + 1 < im->w ? x0 + 1 : im->w - 1;
            double tx = fx - (double)x0;
            for (int k = 0; k < im->c; k++) {
                const uint8_t *p = im->px;
                int c = im->c;
                double top = p[(y0 * im->w + x0) * c + k] * (1 - tx) +
                             p[(y0 * im->w + x1) * c + k] * tx;
                double bot = p[(y1 * im->w + x0) * c + k] * (1 - tx) +
                             p[(y1 * im->w + x1) * c + k] * tx;
                double v = top * (1 - ty) + bot * ty;
                out[(y * w + x) * c + k] = (uint8_t)lrint(fmin(255.0, fmax(0.0, v)));
            }
        }
    }
}

/* ---- output ---- */

typedef struct writer {
    ct_out_file out;
    hid_t images, labels;
    int64_t h, w;
    int c;
} writer;

static hid_t make_dataset(writer *wr, const char *name, hid_t type, int rank,
                          const hsize_t *dims, ct_error *err)
{
    if (H5Lexists(wr->out.loc, name, H5P_DEFAULT) > 0 &&
        H5Ldelete(wr->out.loc, name, H5P_DEFAULT) < 0) {
        ct_err(err, CT_ERR_IO, "%s: cannot replace '%s'", wr->out.path, name);
        return H5I_INVALID_HID;
    }
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t d = space >= 0 ? H5Dcreate2(wr->out.loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT,
                                      H5P_DEFAULT)
                         : H5I_INVALID_HID;
    ct_h5_close_space(&space);
    if (d < 0)
        ct_err(err, CT_ERR_IO, "%s: cannot create '%s'", wr->out.path, name);
    return d;
}

static int write_block(writer *wr, int64_t at, int64_t n, const uint8_t *px,
                       const int32_t *labels, ct_error *err)
{
    hsize_t start[4] = {(hsize_t)at, 0, 0, 0};
    hsize_t count[4] = {(hsize_t)n, (hsize_t)wr->h, (hsize_t)wr->w, (hsize_t)wr->c};
    herr_t rc = -1;
    for (int k = 0; k < 2; k++) {
        hid_t d = k ? wr->labels : wr->images, fs = H5Dget_space(d);
        hid_t ms = H5Screate_simple(k ? 1 : 4, count, NULL);
        rc = fs >= 0 && ms >= 0 &&
                     H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0
                 ? H5Dwrite(d, k ? H5T_NATIVE_INT32 : H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT,
                            k ? (const void *)labels : (const void *)px)
                 : -1;
        ct_h5_close_space(&fs);
        ct_h5_close_space(&ms);
        if (rc < 0)
            break;
    }
    if (rc >= 0)
        return 0;
    char why[CT_H5_REASON_MAX];
    ct_h5_failure(why);
    return ct_err(err, CT_ERR_IO, "writing %s failed%s%s", wr->out.path, why[0] ? ": " : "",
                  why);
}

static int write_classes(writer *wr, const tree *t, ct_error *err)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    int rc = type >= 0 && H5Tset_size(type, H5T_VARIABLE) >= 0 &&
                     H5Tset_cset(type, H5T_CSET_UTF8) >= 0
                 ? 0
                 : ct_err(err, CT_ERR_IO, "%s: cannot make a string type", wr->out.path);
    hsize_t dims[1] = {(hsize_t)t->nclasses};
    if (rc == 0)
        rc = ct_out_write(&wr->out, "classes", type, type, 1, dims, t->classes, err);
    if (type >= 0)
        H5Tclose(type);
    return rc;
}

/* ---- the import ---- */

/* The file order: Fisher-Yates with the seed's stream, so the same tree and seed give the
 * same file. */
static void shuffle(tree *t, uint64_t seed)
{
    uint64_t key = ct_rng_key(seed, CT_RNG_SHUFFLE, 1, 0); /* 1: not a fit's epoch order */
    for (int64_t i = t->nfiles - 1; i > 0; i--) {
        int64_t j = (int64_t)ct_rng_below(key, (uint64_t)i, (uint64_t)(i + 1));
        entry e = t->files[i];
        t->files[i] = t->files[j];
        t->files[j] = e;
    }
}

/* Image i into row slot of the block: decoded, checked against the size, resized. */
static int one_image(const ct_image_options *o, const entry *e, writer *wr, uint8_t *dst,
                     ct_error *err)
{
    image im;
    if (decode(e->path, o->channels, &im, err) < 0) {
        free(im.px);
        return -1;
    }
    int rc = 0;
    if (o->height > 0)
        resize_into(&im, wr->h, wr->w, dst);
    else if (im.h != wr->h || im.w != wr->w)
        rc = ct_err(err, CT_ERR_DATA, "%s is %" PRId64 "x%" PRId64 " pixels (height x width), "
                    "but the first image is %" PRId64 "x%" PRId64 "; give --size H W to resize "
                    "every image", e->path, im.h, im.w, wr->h, wr->w);
    else
        memcpy(dst, im.px, (size_t)(im.h * im.w * im.c));
    free(im.px);
    return rc;
}

static int open_writer(writer *wr, const char *out, const ct_image_options *o, const tree *t,
                       ct_error *err)
{
    wr->c = o->channels;
    if (o->height > 0) {
        wr->h = o->height;
        wr->w = o->width;
    } else {
        image first;
        int rc = decode(t->files[0].path, o->channels, &first, err);
        free(first.px);
        if (rc < 0)
            return -1;
        wr->h = first.h;
        wr->w = first.w;
    }
    if (ct_out_open(&wr->out, out, o->group, err) < 0)
        return -1;
    hsize_t dims[4] = {(hsize_t)t->nfiles, (hsize_t)wr->h, (hsize_t)wr->w, (hsize_t)wr->c};
    wr->images = make_dataset(wr, "images", H5T_STD_U8LE, 4, dims, err);
    wr->labels = wr->images >= 0 ? make_dataset(wr, "labels", H5T_STD_I32LE, 1, dims, err)
                                 : H5I_INVALID_HID;
    return wr->labels >= 0 ? 0 : -1;
}

static int write_all(writer *wr, const tree *t, const ct_image_options *o, const char *root,
                     ct_error *err)
{
    size_t row = (size_t)(wr->h * wr->w * wr->c);
    uint8_t *px = malloc(row * BLOCK_ROWS);
    int32_t labels[BLOCK_ROWS];
    if (!px)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    char what[4200];
    snprintf(what, sizeof what, "importing %s", root);
    double started = ct_stop_clock();
    int rc = 0;
    for (int64_t at = 0; rc == 0 && at < t->nfiles; at += BLOCK_ROWS) {
        int64_t n = t->nfiles - at < BLOCK_ROWS ? t->nfiles - at : BLOCK_ROWS;
        for (int64_t i = 0; rc == 0 && i < n; i++) {
            rc = one_image(o, &t->files[at + i], wr, px + (size_t)i * row, err);
            labels[i] = t->files[at + i].label;
        }
        if (rc == 0)
            rc = write_block(wr, at, n, px, labels, err);
        if (rc == 0 && ct_stop_due(started))
            rc = ct_stop_error(err, what);
        if (rc == 0)
            ct_phase_progress(started, what, at + n, t->nfiles, "images");
    }
    free(px);
    return rc;
}

void ct_image_options_default(ct_image_options *o)
{
    *o = (ct_image_options){.channels = 3, .seed = 1337, .shuffle = true, .group = "train"};
}

int64_t ct_data_import_images(const char *dir, const char *out, const ct_image_options *o,
                              ct_image_report *report, ct_error *err)
{
    tree t = {0};
    writer wr = {.images = H5I_INVALID_HID, .labels = H5I_INVALID_HID};
    wr.out.loc = wr.out.file = H5I_INVALID_HID;
    if (o->channels != 1 && o->channels != 3 && o->channels != 4)
        return ct_err(err, CT_ERR_USAGE, "images have 1, 3 or 4 channels, not %d", o->channels);
    if ((o->height > 0) != (o->width > 0) || o->height > MAX_SIDE || o->width > MAX_SIDE)
        return ct_err(err, CT_ERR_USAGE, "--size takes a height and a width from 1 to %d",
                      MAX_SIDE);
    int rc = scan_tree(dir, &t, err);
    if (rc == 0 && o->shuffle)
        shuffle(&t, o->seed);
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    if (rc == 0)
        rc = open_writer(&wr, out, o, &t, err);
    if (rc == 0)
        rc = write_all(&wr, &t, o, dir, err);
    if (wr.images >= 0)
        H5Dclose(wr.images);
    if (wr.labels >= 0)
        H5Dclose(wr.labels);
    if (rc == 0)
        rc = write_classes(&wr, &t, err);
    if (rc == 0)
        rc = ct_out_finish(&wr.out, err);
    ct_out_close(&wr.out);
    ct_h5_quiet_off(&q);
    if (rc == 0 && report)
        *report = (ct_image_report){t.nclasses, t.skipped, wr.h, wr.w, wr.c};
    int64_t n = t.nfiles;
    tree_free(&t);
    return rc < 0 ? -1 : n;
}
