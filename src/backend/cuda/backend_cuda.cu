/* backend_cuda.cu - the CUDA backend's core: device set-up, memory, copies, batch staging,
 * cuBLAS GEMM, error recording, and the op table (the kernels live in the other files of
 * this folder). Built into the module ctrain-cuda.so, which src/backend/backend_cuda_load.c loads
 * on the first run that asks for device: cuda.
 *
 * Two streams: compute (every op, in order) and copy (batches from page-locked host
 * buffers). Per staging slot, an event marks its copy done (compute waits for it, the
 * host waits before refilling the host buffer) and another the compute that last read
 * its device buffers (the next copy into them waits for it). */
#include <stdio.h>
#include <string.h>

#include "cuda_internal.h"

namespace {

struct cuda_state {
    int device;
    char name[320];
    cudaStream_t compute, copy;
    cublasHandle_t blas;
    cudaEvent_t copied[CT_STAGE_SLOTS], consumed[CT_STAGE_SLOTS];
    cudaEvent_t zeroed; /* after the latest new block's zeroing on the compute stream */
    bool copy_waited[CT_STAGE_SLOTS]; /* this batch's copies already wait for `consumed` */
    void *scratch[CT_CUDA_SCRATCH_SLOTS];
    size_t scratch_size[CT_CUDA_SCRATCH_SLOTS];
    bool failed;
    char error[1024];
};

cuda_state S;

} // namespace

extern "C" void ct_cuda_fail(const char *what, const char *detail)
{
    if (S.failed)
        return;
    S.failed = true;
    snprintf(S.error, sizeof S.error, "the GPU (%s) failed in %s: %s", S.name, what, detail);
}

static bool ok(cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return true;
    ct_cuda_fail(what, cudaGetErrorString(e));
    return false;
}

static const char *blas_status(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "cuBLAS not initialised";
    case CUBLAS_STATUS_ALLOC_FAILED: return "cuBLAS out of memory";
    case CUBLAS_STATUS_INVALID_VALUE: return "cuBLAS: invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "cuBLAS: architecture mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "cuBLAS: execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "cuBLAS: internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "cuBLAS: not supported";
    default: return "cuBLAS error";
    }
}

extern "C" void ct_cuda_check_launch(const char *what)
{
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        ct_cuda_fail(what, cudaGetErrorString(e));
}

extern "C" cudaStream_t ct_cuda_stream(void) { return S.compute; }
extern "C" cublasHandle_t ct_cuda_blas(void) { return S.blas; }

extern "C" void *ct_cuda_scratch(int slot, size_t bytes)
{
    if (slot < 0 || slot >= CT_CUDA_SCRATCH_SLOTS)
        return NULL;
    if (bytes <= S.scratch_size[slot])
        return S.scratch[slot];
    /* Queued ops may still use the old block: wait before replacing it. Sizes double so a
     * run settles after a few steps. */
    size_t size = S.scratch_size[slot] * 2 > bytes ? S.scratch_size[slot] * 2 : bytes;
    cudaStreamSynchronize(S.compute);
    cudaFree(S.scratch[slot]);
    S.scratch[slot] = NULL;
    S.scratch_size[slot] = 0;
    if (!ok(cudaMalloc(&S.scratch[slot], size), "allocating scratch memory"))
        return NULL;
    S.scratch_size[slot] = size;
    return S.scratch[slot];
}

/* ---- memory and copies ------------------------------------------------------------ */

static void *cuda_alloc(size_t bytes)
{
    void *p = NULL;
    size_t size = bytes ? bytes : 1;
    if (cudaMalloc(&p, size) != cudaSuccess) {
        cudaGetLastError(); /* an allocation failure is returned, not remembered */
        return NULL;
    }
    if (!ok(cudaMemsetAsync(p, 0, size, S.compute), "zeroing new memory")) {
        cudaFree(p);
        return NULL;
    }
    /* Batch copies into the block run on the copy stream: they must not race the zeroing. */
    if (!ok(cudaEventRecord(S.zeroed, S.compute), "zeroing new memory") ||
        !ok(cudaStreamWaitEvent(S.copy, S.zeroed, 0), "zeroing new memory")) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void cuda_free(void *p)
{
    if (p)
        cudaFree(p); /* waits for the work queued on it */
}

/* Host memory may be pageable and reused as soon as these return: both wait. */
static void cuda_upload(void *dst, const void *src, size_t bytes)
{
    if (!bytes)
        return;
    ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, S.compute), "a copy to the GPU");
    ok(cudaStreamSynchronize(S.compute), "a copy to the GPU");
}

static void cuda_download(void *dst, const void *src, size_t bytes)
{
    if (!bytes)
        return;
    ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, S.compute), "a copy from the GPU");
    ok(cudaStreamSynchronize(S.compute), "a copy from the GPU");
}

static void *cuda_host_alloc(size_t bytes)
{
    void *p = NULL;
    size_t size = bytes ? bytes : 1;
    if (cudaHostAlloc(&p, size, cudaHostAllocDefault) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    memset(p, 0, size);
    return p;
}

static void cuda_host_free(void *p)
{
    if (p)
        cudaFreeHost(p);
}

static void cuda_sync(void)
{
    ok(cudaStreamSynchronize(S.copy), "waiting for copies");
    ok(cudaStreamSynchronize(S.compute), "waiting for the GPU");
}

static int cuda_check(ct_error *err)
{
    if (!S.failed) {
        /* A kernel fault shows up on the next synchronising call; look once more. */
        cudaError_t e = cudaStreamQuery(S.compute);
        if (e != cudaSuccess && e != cudaErrorNotReady)
            ct_cuda_fail("a queued operation", cudaGetErrorString(e));
    }
    if (!S.failed)
        return 0;
    S.failed = false;
    return ct_err(err, CT_ERR_INTERNAL, "%s", S.error);
}

/* ---- batch staging ---------------------------------------------------------------- */

static void stage_wait_host(int slot)
{
    ok(cudaEventSynchronize(S.copied[slot]), "waiting for a batch copy");
    S.copy_waited[slot] = false;
}

static void stage_upload(int slot, void *dst, const void *src, size_t bytes)
{
    if (!S.copy_waited[slot]) {
        ok(cudaStreamWaitEvent(S.copy, S.consumed[slot], 0), "ordering a batch copy");
        S.copy_waited[slot] = true;
    }
    ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, S.copy), "a batch copy");
    ok(cudaEventRecord(S.copied[slot], S.copy), "a batch copy");
}

static void stage_use(int slot)
{
    ok(cudaStreamWaitEvent(S.compute, S.copied[slot], 0), "waiting for a batch");
}

static void stage_release(int slot)
{
    ok(cudaEventRecord(S.consumed[slot], S.compute), "releasing a batch");
}

/* ---- GEMM -------------------------------------------------------------------------- */

/* Row-major C = alpha op(A) op(B) + beta C is column-major C^T = op(B)^T op(A)^T: the
 * same call with the operands swapped. */
extern "C" void ct_cuda_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                             float alpha, const float *a, int64_t lda, const float *b,
                             int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    const int64_t big = 2147483647;
    if (m > big || n > big || k > big || lda > big || ldb > big || ldc > big) {
        ct_cuda_fail("gemm", "a matrix dimension exceeds 2^31 - 1");
        return;
    }
    cublasStatus_t s = cublasSgemm(S.blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m, (int)k,
                                   &alpha, b, (int)ldb, a, (int)lda, &beta, c, (int)ldc);
    if (s != CUBLAS_STATUS_SUCCESS)
        ct_cuda_fail("gemm", blas_status(s));
}

/* The packed form is op(B) itself, k x n row-major (column-major n x k): cuBLAS packs
 * its own operands. geam with beta 0 copies, or transposes, B into it. */
extern "C" void ct_cuda_gemm_pack_b(bool trans_b, int64_t k, int64_t n, const float *b,
                                    int64_t ldb, float *packed)
{
    if (k <= 0 || n <= 0)
        return;
    const int64_t big = 2147483647;
    if (k > big || n > big || ldb > big) {
        ct_cuda_fail("gemm_pack_b", "a matrix dimension exceeds 2^31 - 1");
        return;
    }
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t s = cublasSgeam(S.blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N,
                                   (int)n, (int)k, &one, b, (int)ldb, &zero, packed, (int)n,
                                   packed, (int)n);
    if (s != CUBLAS_STATUS_SUCCESS)
        ct_cuda_fail("gemm_pack_b", blas_status(s));
}

extern "C" void ct_cuda_gemm_packed(int64_t m, int64_t n, int64_t k, const float *a,
                                    int64_t lda, const float *packed, const float *d,
                                    int64_t ldd, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (d && d != c)
        ct_cuda_copy_strided(d, ldd, c, ldc, m, n);
    ct_cuda_gemm(false, false, m, n, k, 1.0f, a, lda, packed, n, d ? 1.0f : 0.0f, c, ldc);
}

/* ---- set-up and the table ----------------------------------------------------------- */

static ct_backend table;

static int setup(ct_error *err)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
        return ct_err(err, CT_ERR_CONFIG, "no usable GPU here (%s)",
                      e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device found");
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(0)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess)
        return ct_err(err, CT_ERR_CONFIG, "cannot use GPU 0: %s", cudaGetErrorString(e));
    snprintf(S.name, sizeof S.name, "%s, sm_%d%d, %.0f GiB", prop.name, prop.major, prop.minor,
             (double)prop.totalGlobalMem / (1 << 30));
    if ((e = cudaStreamCreateWithFlags(&S.compute, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&S.copy, cudaStreamNonBlocking)) != cudaSuccess)
        return ct_err(err, CT_ERR_CONFIG, "GPU %s: cannot create streams: %s", S.name,
                      cudaGetErrorString(e));
    for (int s = 0; s < CT_STAGE_SLOTS; s++)
        if ((e = cudaEventCreateWithFlags(&S.copied[s], cudaEventDisableTiming)) != cudaSuccess ||
            (e = cudaEventCreateWithFlags(&S.consumed[s], cudaEventDisableTiming)) != cudaSuccess)
            return ct_err(err, CT_ERR_CONFIG, "GPU %s: cannot create events: %s", S.name,
                          cudaGetErrorString(e));
    if ((e = cudaEventCreateWithFlags(&S.zeroed, cudaEventDisableTiming)) != cudaSuccess)
        return ct_err(err, CT_ERR_CONFIG, "GPU %s: cannot create events: %s", S.name,
                      cudaGetErrorString(e));
    cublasStatus_t bs = cublasCreate(&S.blas);
    if (bs != CUBLAS_STATUS_SUCCESS || cublasSetStream(S.blas, S.compute) != CUBLAS_STATUS_SUCCESS)
        return ct_err(err, CT_ERR_CONFIG, "GPU %s: %s", S.name, blas_status(bs));
    /* Plain FP32 (no TF32), so results stay within float tolerance of the CPU's. */
    cublasSetMathMode(S.blas, CUBLAS_DEFAULT_MATH);
    return 0;
}

static void fill_table(void)
{
    ct_backend *t = &table;
    t->name = S.name;
    t->device = CT_DEVICE_CUDA;
    t->alloc = cuda_alloc;
    t->free = cuda_free;
    t->upload = cuda_upload;
    t->download = cuda_download;
    t->gemm = ct_cuda_gemm;
    t->gemm_pack_b = ct_cuda_gemm_pack_b;
    t->gemm_packed = ct_cuda_gemm_packed;
    t->fill = ct_cuda_fill;
    t->copy = ct_cuda_copy;
    t->axpy = ct_cuda_axpy;
    t->add_scaled = ct_cuda_add_scaled;
    t->scale = ct_cuda_scale;
    t->mul = ct_cuda_mul;
    t->add_row_vector = ct_cuda_add_row_vector;
    t->sum_rows = ct_cuda_sum_rows;
    t->bias_act = ct_cuda_bias_act;
    t->bias_act_backward = ct_cuda_bias_act_backward;
    t->bias_act_to = ct_cuda_bias_act_to;
    t->act_forward = ct_cuda_act_forward;
    t->act_backward = ct_cuda_act_backward;
    t->dropout_mask = ct_cuda_dropout_mask;
    t->add_noise = ct_cuda_add_noise;
    t->scale_channels = ct_cuda_scale_channels;
    t->scale_shift = ct_cuda_scale_shift;
    t->image_aug = ct_cuda_image_aug;
    t->image_aug_backward = ct_cuda_image_aug_backward;
    t->contrast = ct_cuda_contrast;
    t->contrast_backward = ct_cuda_contrast_backward;
    t->channel_moments = ct_cuda_channel_moments;
    t->normalize_channels = ct_cuda_normalize_channels;
    t->normalize_channels_backward = ct_cuda_normalize_channels_backward;
    t->im2col = ct_cuda_im2col;
    t->col2im = ct_cuda_col2im;
    t->conv_workspace = ct_cuda_conv_workspace;
    t->conv_forward = ct_cuda_conv_forward;
    t->conv_backward = ct_cuda_conv_backward;
    t->depthwise_forward = ct_cuda_depthwise_forward;
    t->depthwise_backward = ct_cuda_depthwise_backward;
    t->pool_forward = ct_cuda_pool_forward;
    t->pool_backward = ct_cuda_pool_backward;
    t->global_pool_forward = ct_cuda_global_pool_forward;
    t->global_pool_backward = ct_cuda_global_pool_backward;
    t->pad2d = ct_cuda_pad2d;
    t->upsample2d = ct_cuda_upsample2d;
    t->batchnorm_train = ct_cuda_batchnorm_train;
    t->batchnorm_infer = ct_cuda_batchnorm_infer;
    t->batchnorm_backward = ct_cuda_batchnorm_backward;
    t->groupnorm_forward = ct_cuda_groupnorm_forward;
    t->groupnorm_backward = ct_cuda_groupnorm_backward;
    t->loss = ct_cuda_loss;
    t->metric = ct_cuda_metric;
    t->regularize = ct_cuda_regularize;
    t->clip_value = ct_cuda_clip_value;
    t->clip_norm = ct_cuda_clip_norm;
    t->update = ct_cuda_update;
    t->copy_strided = ct_cuda_copy_strided;
    t->expand = ct_cuda_expand;
    t->expand_backward = ct_cuda_expand_backward;
    t->extremum = ct_cuda_extremum;
    t->take_where = ct_cuda_take_where;
    t->gemm_batched = ct_cuda_gemm_batched;
    t->attention_softmax = ct_cuda_attention_softmax;
    t->attention_softmax_backward = ct_cuda_attention_softmax_backward;
    t->gemm_batched_causal = ct_cuda_gemm_batched_causal;
    t->l2_normalize = ct_cuda_l2_normalize;
    t->l2_normalize_backward = ct_cuda_l2_normalize_backward;
    t->gather_rows = ct_cuda_gather_rows;
    t->scatter_add_rows = ct_cuda_scatter_add_rows;
    t->step_mask = ct_cuda_step_mask;
    t->transpose = ct_cuda_transpose;
    t->lstm_step = ct_cuda_lstm_step;
    t->lstm_step_backward = ct_cuda_lstm_step_backward;
    t->lstm_step_packed = ct_cuda_lstm_step_packed;
    t->lstm_step_backward_packed = ct_cuda_lstm_step_backward_packed;
    t->mask_weights = ct_cuda_mask_weights;
    t->sync = cuda_sync;
    t->check = cuda_check;
    t->host_alloc = cuda_host_alloc;
    t->host_free = cuda_host_free;
    t->stage_wait_host = stage_wait_host;
    t->stage_upload = stage_upload;
    t->stage_use = stage_use;
    t->stage_release = stage_release;
}

/* The module's entry point (dlsym'd by src/backend/backend_cuda_load.c). Set up once; a failure
 * is final for the process, and its message is returned every time. */
extern "C" __attribute__((visibility("default"))) const ct_backend *
ct_cuda_module_backend(ct_error *err)
{
    static int state; /* 0 untried, 1 ready, -1 failed */
    static ct_error why;
    if (state == 0) {
        state = setup(&why) == 0 ? 1 : -1;
        if (state == 1)
            fill_table();
    }
    if (state < 0) {
        if (err)
            *err = why;
        return NULL;
    }
    return &table;
}
