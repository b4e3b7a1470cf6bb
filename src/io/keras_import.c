/* keras_import.c - placeholder */
#include "ctrain.h"
void ct_keras_import_report_free(ct_keras_import_report *r) { (void)r; }
int ct_keras_import(const char *path, const char *out_dir, ct_keras_import_report *report,
                    ct_error *err)
{
    (void)out_dir, (void)report;
    return ct_err(err, CT_ERR_USAGE, "%s: not yet", path);
}
