/* keras_weights.c - reading Keras 3's weights files (model.save_weights's .weights.h5, a
 * .keras archive's model.weights.h5): each layer's variables lie under the group
 * ct_keras_layer_groups names, in the places ct_keras_var_place gives, and every one is
 * checked against the model's shape before any parameter changes. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "h5util.h"
#include "keras_io.h"

/* Reads dataset `name` of file into dst after checking it has p's shape. */
static int read_var(hid_t file, const char *name, const ct_layer *l, const ct_param *p,
                    float *dst, const char *label, ct_error *err)
{
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0 || H5Oexists_by_name(file, name, H5P_DEFAULT) <= 0)
        return ct_err(err, CT_ERR_DATA, "%s: layer '%s' (%s): no dataset %s for its weight "
                      "'%s'", label, l->name, l->kind->class_name, name, p->name);
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0)
        return ct_err(err, CT_ERR_DATA, "%s: %s is not a dataset", label, name);
    char what[600];
    snprintf(what, sizeof what, "%s: %s", label, name);
    hid_t space = H5Dget_space(d), t = H5Dget_type(d);
    int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    hsize_t dims[H5S_MAX_RANK];
    bool same = rank == p->shape.ndim && H5Sget_simple_extent_dims(space, dims, NULL) == rank;
    for (int i = 0; same && i < rank; i++)
        same = (int64_t)dims[i] == p->shape.dim[i];
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    int rc = 0;
    char a[256];
    if (c != H5T_FLOAT && c != H5T_INTEGER)
        rc = ct_err(err, CT_ERR_DATA, "%s is not numeric", what);
    else if (!same)
        rc = ct_err(err, CT_ERR_DATA, "%s: layer '%s' (%s): weight '%s' has another shape "
                    "in the file than the model's %s", what, l->name, l->kind->class_name,
                    p->name, ct_shape_format_sample(&p->shape, a, sizeof a));
    else if (ct_h5_check_layout(d, what, err) < 0 || ct_h5_check_storage(d, what, err) < 0)
        rc = -1;
    else if (ct_shape_size(&p->shape) > 0 &&
             H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        rc = ct_err(err, CT_ERR_IO, "%s: reading it failed", what);
    if (t >= 0)
        H5Tclose(t);
    if (space >= 0)
        H5Sclose(space);
    H5Dclose(d);
    return rc;
}

/* Whether dataset name holds p's shape: 1, else 0 with why set. */
static int var_matches(hid_t file, const char *name, const ct_param *p, ct_error *why)
{
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0 || H5Oexists_by_name(file, name, H5P_DEFAULT) <= 0) {
        ct_err(why, CT_ERR_DATA, "no %s in the file", name);
        return 0;
    }
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    hid_t space = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
    int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    hsize_t dims[H5S_MAX_RANK];
    bool same = rank == p->shape.ndim && H5Sget_simple_extent_dims(space, dims, NULL) == rank;
    for (int i = 0; same && i < rank; i++)
        same = (int64_t)dims[i] == p->shape.dim[i];
    if (space >= 0)
        H5Sclose(space);
    if (d >= 0)
        H5Dclose(d);
    if (!same) {
        char a[256];
        ct_err(why, CT_ERR_DATA, "%s is not of %s's shape %s", name, p->name,
               ct_shape_format_sample(&p->shape, a, sizeof a));
        return 0;
    }
    return 1;
}

int ct_keras3_layer_read(const ct_model *m, int64_t file, const char *group, const ct_layer *l,
                         float *dst, const char *label, ct_error *why, ct_error *err)
{
    (void)m;
    char name[CT_KERAS_GROUP_MAX + 64];
    int idx;
    if (!ct_keras_var_place(l, 0, &idx)) {
        ct_err(why, CT_ERR_DATA, "where Keras 3 keeps a %s's weights is not known",
               l->kind->class_name);
        return 0;
    }
    for (int i = 0; i < l->nparams; i++) {
        const char *place = ct_keras_var_place(l, i, &idx);
        snprintf(name, sizeof name, "%s/%s/%d", group, place, idx);
        if (!var_matches((hid_t)file, name, &l->params[i], why))
            return 0;
    }
    for (int i = 0; i < l->nparams; i++) {
        const char *place = ct_keras_var_place(l, i, &idx);
        snprintf(name, sizeof name, "%s/%s/%d", group, place, idx);
        if (read_var((hid_t)file, name, l, &l->params[i], dst, label, err) < 0)
            return -1;
        dst += ct_shape_size(&l->params[i].shape);
    }
    return 1;
}

int ct_keras3_weights_read(ct_model *m, int64_t file, const char *label, ct_error *err)
{
    if (ct_keras_check_exportable(m, err) < 0)
        return ct_err_prefix(err, "%s", label);
    char (*groups)[CT_KERAS_GROUP_MAX] = ct_keras_layer_groups(m);
    int64_t total = 0;
    for (int j = 0; j < m->nlayers; j++)
        for (int i = 0; !m->layers[j].shared && i < m->layers[j].nparams; i++)
            total += ct_shape_size(&m->layers[j].params[i].shape);
    float *stage = malloc(((size_t)total + 1) * sizeof *stage);
    int rc = groups && stage ? 0 : ct_err(err, CT_ERR_NOMEM, "out of memory");
    float *at = stage;
    for (int j = 0; rc == 0 && j < m->nlayers; j++) {
        const ct_layer *l = &m->layers[j];
        for (int i = 0; rc == 0 && !l->shared && i < l->nparams; i++) {
            int idx;
            const char *place = ct_keras_var_place(l, i, &idx);
            char name[CT_KERAS_GROUP_MAX + 64];
            snprintf(name, sizeof name, "%s/%s/%d", groups[j], place, idx);
            rc = read_var((hid_t)file, name, l, &l->params[i], at, label, err);
            at += ct_shape_size(&l->params[i].shape);
        }
    }
    at = stage;
    for (int j = 0; rc == 0 && j < m->nlayers; j++)
        for (int i = 0; !m->layers[j].shared && i < m->layers[j].nparams; i++) {
            ct_param *p = &m->layers[j].params[i];
            size_t bytes = (size_t)ct_shape_size(&p->shape) * sizeof *at;
            if (!m->be || m->be->device == CT_DEVICE_CPU)
                memcpy(p->value, at, bytes);
            else
                m->be->upload(p->value, at, bytes);
            at += ct_shape_size(&p->shape);
        }
    if (rc == 0)
        m->params_pending = false;
    free(stage);
    free(groups);
    return rc;
}
