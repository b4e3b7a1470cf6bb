/* activation.c - activation names as Keras spells them. */
#include <ctype.h>
#include <string.h>

#include "backend.h"

typedef struct {
    const char *name; /* compared after normalise(): lower case, no underscores */
    ct_activation kind;
} act_alias;

static const char *const canonical[CT_ACT_COUNT] = {
    [CT_ACT_LINEAR] = "linear",
    [CT_ACT_RELU] = "relu",
    [CT_ACT_RELU6] = "relu6",
    [CT_ACT_LEAKY_RELU] = "leaky_relu",
    [CT_ACT_ELU] = "elu",
    [CT_ACT_SELU] = "selu",
    [CT_ACT_GELU] = "gelu",
    [CT_ACT_SILU] = "silu",
    [CT_ACT_SIGMOID] = "sigmoid",
    [CT_ACT_HARD_SIGMOID] = "hard_sigmoid",
    [CT_ACT_TANH] = "tanh",
    [CT_ACT_SOFTPLUS] = "softplus",
    [CT_ACT_SOFTSIGN] = "softsign",
    [CT_ACT_SOFTMAX] = "softmax",
    [CT_ACT_LOG_SOFTMAX] = "log_softmax",
};

/* Spellings beyond the canonical names (which match through normalise as well). */
static const act_alias aliases[] = {
    {"none", CT_ACT_LINEAR},
    {"swish", CT_ACT_SILU},
};

/* "LeakyReLU", "leaky_relu" and "LEAKY_RELU" all become "leakyrelu". Returns false when
 * the name does not fit the buffer (no activation name is that long). */
static bool normalise(const char *s, char *out, size_t n)
{
    size_t at = 0;
    for (; *s; s++) {
        if (*s == '_')
            continue;
        if (at + 1 >= n)
            return false;
        out[at++] = (char)tolower((unsigned char)*s);
    }
    out[at] = '\0';
    return true;
}

static float default_alpha(ct_activation kind)
{
    switch (kind) {
    case CT_ACT_LEAKY_RELU:
        return 0.2f; /* keras.activations.leaky_relu's negative_slope */
    case CT_ACT_ELU:
        return 1.0f;
    default:
        return 0.0f; /* gelu: 0 selects the exact erf form, Keras's default */
    }
}

static int lookup(const char *norm, ct_activation *kind)
{
    char buf[32];
    for (int k = 0; k < CT_ACT_COUNT; k++) {
        normalise(canonical[k], buf, sizeof buf);
        if (strcmp(buf, norm) == 0) {
            *kind = (ct_activation)k;
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
        if (strcmp(aliases[i].name, norm) == 0) {
            *kind = aliases[i].kind;
            return 0;
        }
    }
    return -1;
}

int ct_act_parse(const char *name, ct_act *out)
{
    char norm[32];
    ct_activation kind = CT_ACT_LINEAR;
    if (name && *name) {
        if (!normalise(name, norm, sizeof norm) || lookup(norm, &kind) != 0)
            return -1;
    }
    out->kind = kind;
    out->alpha = default_alpha(kind);
    return 0;
}

const char *ct_act_name(ct_activation kind)
{
    if ((int)kind < 0 || kind >= CT_ACT_COUNT)
        return "unknown";
    return canonical[kind];
}

const char *ct_act_names(void)
{
    return "linear, relu, relu6, leaky_relu, elu, selu, gelu, silu, swish, sigmoid, "
           "hard_sigmoid, tanh, softplus, softsign, softmax, log_softmax";
}

bool ct_act_from_output(ct_act act)
{
    switch (act.kind) {
    case CT_ACT_LINEAR:
    case CT_ACT_RELU:
    case CT_ACT_RELU6:
    case CT_ACT_SIGMOID:
    case CT_ACT_HARD_SIGMOID:
    case CT_ACT_TANH:
        return true;
    case CT_ACT_LEAKY_RELU: /* a positive slope keeps the sign, so y tells the branch */
        return act.alpha > 0.0f;
    default:
        return false;
    }
}
