/* registry.c - every layer kind, listed explicitly (self-registration silently vanishes
 * when a static library drops an object file). Keep the list in alphabetical order of
 * config name: error messages show it as is. */
#include <ctype.h>
#include <string.h>
#include <threads.h>

#include "layer.h"

extern const ct_layer_kind ct_layer_activation, ct_layer_dense, ct_layer_dropout,
    ct_layer_elu, ct_layer_flatten, ct_layer_leaky_relu, ct_layer_relu, ct_layer_reshape,
    ct_layer_softmax;

static const ct_layer_kind *const kinds[] = {
    &ct_layer_activation,
    &ct_layer_dense,
    &ct_layer_dropout,
    &ct_layer_elu,
    &ct_layer_flatten,
    &ct_layer_leaky_relu,
    &ct_layer_relu,
    &ct_layer_reshape,
    &ct_layer_softmax,
};

#define NKINDS (sizeof kinds / sizeof kinds[0])

/* Lower case without underscores, so "leaky_relu", "LeakyReLU" and "Leaky_ReLU" meet.
 * Returns false when s does not fit. */
static bool fold(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; *s; s++) {
        if (*s == '_')
            continue;
        if (k + 1 >= n)
            return false;
        out[k++] = (char)tolower((unsigned char)*s);
    }
    out[k] = '\0';
    return true;
}

const ct_layer_kind *ct_layer_kind_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < NKINDS; i++)
        if (!strcmp(name, kinds[i]->name) || !strcmp(name, kinds[i]->class_name))
            return kinds[i];
    char want[128], have[128];
    if (!fold(name, want, sizeof want))
        return NULL;
    for (size_t i = 0; i < NKINDS; i++) {
        if ((fold(kinds[i]->name, have, sizeof have) && !strcmp(want, have)) ||
            (fold(kinds[i]->class_name, have, sizeof have) && !strcmp(want, have)))
            return kinds[i];
    }
    return NULL;
}

static char names_text[1024];
static const char *names_list[NKINDS + 1];
static once_flag names_once = ONCE_FLAG_INIT;

static void names_init(void)
{
    size_t at = 0;
    for (size_t i = 0; i < NKINDS; i++) {
        names_list[i] = kinds[i]->name;
        at += (size_t)snprintf(names_text + at, sizeof names_text - at, "%s%s", i ? ", " : "",
                               kinds[i]->name);
        if (at >= sizeof names_text)
            break;
    }
    names_list[NKINDS] = NULL;
}

const char *ct_layer_kind_names(void)
{
    call_once(&names_once, names_init);
    return names_text;
}

const char *const *ct_layer_kind_list(void)
{
    call_once(&names_once, names_init);
    return names_list;
}
