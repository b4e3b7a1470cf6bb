/* registry.c - every layer kind, from the one list in layers/kinds.def (explicit, since
 * self-registration silently vanishes when a static library drops an object file). The
 * list is in alphabetical order of config name: error messages show it as is. */
#include <string.h>
#include <threads.h>

#include "layer.h"
#include "text.h"

#define CT_LAYER(name) extern const ct_layer_kind ct_layer_##name;
#include "kinds.def"
#undef CT_LAYER

static const ct_layer_kind *const kinds[] = {
#define CT_LAYER(name) &ct_layer_##name,
#include "kinds.def"
#undef CT_LAYER
};

/* Keras's short class names for the same layers. */
static const struct {
    const char *alias, *name;
} aliases[] = {
    {"MaxPool1D", "max_pooling1d"},
    {"MaxPool2D", "max_pooling2d"},
    {"AvgPool1D", "average_pooling1d"},
    {"AvgPool2D", "average_pooling2d"},
    {"GlobalMaxPool1D", "global_max_pooling1d"},
    {"GlobalMaxPool2D", "global_max_pooling2d"},
    {"GlobalAvgPool1D", "global_average_pooling1d"},
    {"GlobalAvgPool2D", "global_average_pooling2d"},
    {"Convolution2D", "conv2d"},
    {"Convolution1D", "conv1d"},
};

#define NKINDS (sizeof kinds / sizeof kinds[0])

const ct_layer_kind *ct_layer_kind_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < NKINDS; i++)
        if (!strcmp(name, kinds[i]->name) || !strcmp(name, kinds[i]->class_name))
            return kinds[i];
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (ct_name_matches(name, aliases[i].alias))
            return ct_layer_kind_find(aliases[i].name);
    for (size_t i = 0; i < NKINDS; i++)
        if (ct_name_matches(name, kinds[i]->name) || ct_name_matches(name, kinds[i]->class_name))
            return kinds[i];
    return NULL;
}

static char names_text[2048];
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
