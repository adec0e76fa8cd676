// CUDA kernels of the compat_kernels ops (see launch.h for the interface).
//
// All four ops are memory-bound, so the kernels are written around the
// accesses: each thread moves 16 bytes at a time (4 floats, 8 halves or
// bfloat16s) when every pointer of a row is 16-byte aligned, and falls back to
// element accesses for the ragged tail of a row and for rows that are not
// aligned (a hidden size that is not a multiple of the vector width leaves
// every other row misaligned). Arithmetic is float32 and each output is
// rounded once, the same contract as the CPU kernels, so the two backends
// agree to within the dtype's rounding.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "launch.h"

namespace compat_kernels::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxThreads = 1024;

__device__ __forceinline__ float to_float(float v) {
  return v;
}
__device__ __forceinline__ float to_float(__half v) {
  return __half2float(v);
}
__device__ __forceinline__ float to_float(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// torch builds with __CUDA_NO_HALF_CONVERSIONS__ (and the bfloat16 one), so
// every conversion is spelt out, with round-to-nearest-even like the CPU.
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return to_float(from_float<T>(v));
}

// Elements per 16-byte access.
template <typename T>
constexpr int kVec = 16 / static_cast<int>(sizeof(T));

template <typename T>
struct alignas(16) Pack {
  T v[kVec<T>];
};

template <int W>
struct Floats {
  float v[W];
};

template <int W>
using Width = std::integral_constant<int, W>;

__device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// W == kVec<T>: one 16-byte access, so p must be 16-byte aligned; any other
// W: W element accesses.
template <int W, typename T>
__device__ __forceinline__ Floats<W> load(const T* p) {
  Floats<W> r;
  if constexpr (W == kVec<T>) {
    const Pack<T> pack = *reinterpret_cast<const Pack<T>*>(p);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      r.v[k] = to_float(pack.v[k]);
    }
  } else {
#pragma unroll
    for (int k = 0; k < W; ++k) {
      r.v[k] = to_float(p[k]);
    }
  }
  return r;
}

template <int W, typename T>
__device__ __forceinline__ void store(T* p, const Floats<W>& f) {
  if constexpr (W == kVec<T>) {
    Pack<T> pack;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      pack.v[k] = from_float<T>(f.v[k]);
    }
    *reinterpret_cast<Pack<T>*>(p) = pack;
  } else {
#pragma unroll
    for (int k = 0; k < W; ++k) {
      p[k] = from_float<T>(f.v[k]);
    }
  }
}

// Calls body(Width<W>, i) for chunks [i, i + W) covering [0, n), spread over
// the block's threads: 16-byte chunks first when `vectorised`, then single
// elements for what is left. Two calls with the same n and flag give every
// thread the same chunks, so a thread may read back what it wrote.
template <typename T, typename Body>
__device__ __forceinline__ void for_each_chunk(int64_t n, bool vectorised, Body&& body) {
  constexpr int V = kVec<T>;
  int64_t done = 0;
  if (vectorised) {
    const int64_t chunks = n / V;
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      body(Width<V>{}, c * V);
    }
    done = chunks * V;
  }
  for (int64_t i = done + threadIdx.x; i < n; i += blockDim.x) {
    body(Width<1>{}, i);
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// The block-wide sum, returned to every thread. blockDim.x must be a multiple
// of 32; call at most once per kernel (the shared slots are not reset).
__device__ float block_sum(float v) {
  __shared__ float warp_totals[kMaxThreads / kWarp];
  __shared__ float total;
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  v = warp_sum(v);
  if (lane == 0) {
    warp_totals[warp] = v;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / kWarp;
    const float t = warp_sum(lane < warps ? warp_totals[lane] : 0.f);
    if (lane == 0) {
      total = t;
    }
  }
  __syncthreads();
  return total;
}

// 1 / sqrt, not rsqrtf: IEEE sqrt and division match the CPU kernels.
__device__ __forceinline__ float inverse_rms(float sum_sq, int64_t n, float eps) {
  return 1.f / sqrtf(sum_sq / static_cast<float>(n) + eps);
}

// ---------------------------------------------------------------- kernels
// Norms and silu_and_mul: one block per row.

template <typename T>
__global__ void rms_norm_kernel(
    const T* __restrict__ x, const T* __restrict__ weight, T* __restrict__ out,
    int64_t n, float eps) {
  const int64_t row = blockIdx.x;
  const T* x_row = x + row * n;
  T* out_row = out + row * n;
  const bool vec = aligned16(x_row) && aligned16(weight) && aligned16(out_row);
  float sum_sq = 0.f;
  for_each_chunk<T>(n, vec, [&](auto width, int64_t i) {
    constexpr int W = decltype(width)::value;
    const Floats<W> v = load<W>(x_row + i);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      sum_sq = fmaf(v.v[k], v.v[k], sum_sq);
    }
  });
  const float inv = inverse_rms(block_sum(sum_sq), n, eps);
  for_each_chunk<T>(n, vec, [&](auto width, int64_t i) {
    constexpr int W = decltype(width)::value;
    Floats<W> v = load<W>(x_row + i);
    const Floats<W> w = load<W>(weight + i);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      v.v[k] = v.v[k] * inv * w.v[k];
    }
    store<W>(out_row + i, v);
  });
}

template <typename T>
__global__ void fused_add_rms_norm_kernel(
    const T* __restrict__ x, const T* __restrict__ residual, const T* __restrict__ weight,
    T* __restrict__ out, T* __restrict__ sum, int64_t n, float eps) {
  const int64_t row = blockIdx.x;
  const T* x_row = x + row * n;
  const T* residual_row = residual + row * n;
  T* out_row = out + row * n;
  T* sum_row = sum + row * n;
  const bool vec = aligned16(x_row) && aligned16(residual_row) && aligned16(weight) &&
      aligned16(out_row) && aligned16(sum_row);
  float sum_sq = 0.f;
  for_each_chunk<T>(n, vec, [&](auto width, int64_t i) {
    constexpr int W = decltype(width)::value;
    Floats<W> s = load<W>(x_row + i);
    const Floats<W> r = load<W>(residual_row + i);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      // The sum is rounded to T before it is normalised, as `x + residual`
      // would be, so `sum` and `out` describe the same tensor.
      s.v[k] = round_to<T>(s.v[k] + r.v[k]);
      sum_sq = fmaf(s.v[k], s.v[k], sum_sq);
    }
    store<W>(sum_row + i, s);
  });
  const float inv = inverse_rms(block_sum(sum_sq), n, eps);
  for_each_chunk<T>(n, vec, [&](auto width, int64_t i) {
    constexpr int W = decltype(width)::value;
    Floats<W> s = load<W>(sum_row + i); // this thread's own writes, still in L1/L2
    const Floats<W> w = load<W>(weight + i);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      s.v[k] = s.v[k] * inv * w.v[k];
    }
    store<W>(out_row + i, s);
  });
}

template <typename T>
__global__ void silu_and_mul_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t d) {
  const int64_t row = blockIdx.x;
  const T* gate = x + row * 2 * d;
  const T* up = gate + d;
  T* out_row = out + row * d;
  const bool vec = aligned16(gate) && aligned16(up) && aligned16(out_row);
  for_each_chunk<T>(d, vec, [&](auto width, int64_t i) {
    constexpr int W = decltype(width)::value;
    Floats<W> a = load<W>(gate + i);
    const Floats<W> b = load<W>(up + i);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      a.v[k] = a.v[k] / (1.f + expf(-a.v[k])) * b.v[k];
    }
    store<W>(out_row + i, a);
  });
}

// Rotary embedding: one block per token. cos_sin holds the token's cache row
// as float (cos in [0, rot_dim/2), sin after), shared by all its heads.
//
// A work item is W elements of one head: for NeoX, W rotation pairs (i with
// i + rot_dim/2); for GPT-J, the pairs (2j, 2j+1) inside G = max(W, 2)
// consecutive elements; past rot_dim, W elements copied through.
template <int W, typename T>
__device__ void rotate_heads(
    const T* __restrict__ in, T* __restrict__ out, int64_t heads,
    const RotaryShape& s, const float* cos_sin) {
  constexpr int G = W == 1 ? 2 : W;
  const int64_t half = s.rot_dim / 2;
  const int64_t rot_items = s.is_neox ? half / W : s.rot_dim / G;
  const int64_t per_head = rot_items + (s.head_size - s.rot_dim) / W;
  for (int64_t item = threadIdx.x; item < heads * per_head; item += blockDim.x) {
    const int64_t r = item % per_head;
    const T* h_in = in + (item / per_head) * s.head_size;
    T* h_out = out + (item / per_head) * s.head_size;
    if (r >= rot_items) {
      const int64_t i = s.rot_dim + (r - rot_items) * W;
      store<W>(h_out + i, load<W>(h_in + i)); // exact: every T round-trips float
    } else if (s.is_neox) {
      const int64_t i = r * W;
      Floats<W> x = load<W>(h_in + i);
      Floats<W> y = load<W>(h_in + half + i);
#pragma unroll
      for (int k = 0; k < W; ++k) {
        const float c = cos_sin[i + k];
        const float sn = cos_sin[half + i + k];
        const float xk = x.v[k];
        x.v[k] = xk * c - y.v[k] * sn;
        y.v[k] = y.v[k] * c + xk * sn;
      }
      store<W>(h_out + i, x);
      store<W>(h_out + half + i, y);
    } else {
      const int64_t j = r * G;
      Floats<G> e = load<G>(h_in + j);
#pragma unroll
      for (int p = 0; p < G / 2; ++p) {
        const float c = cos_sin[j / 2 + p];
        const float sn = cos_sin[half + j / 2 + p];
        const float x = e.v[2 * p];
        const float y = e.v[2 * p + 1];
        e.v[2 * p] = x * c - y * sn;
        e.v[2 * p + 1] = y * c + x * sn;
      }
      store<G>(h_out + j, e);
    }
  }
}

template <typename T>
__device__ void rotate_token(
    const T* in, T* out, int64_t width, const RotaryShape& s, const float* cos_sin) {
  constexpr int V = kVec<T>;
  const int64_t rot_multiple = s.is_neox ? s.rot_dim / 2 : s.rot_dim;
  const bool vec = aligned16(in) && aligned16(out) && s.head_size % V == 0 &&
      rot_multiple % V == 0;
  if (vec) {
    rotate_heads<V>(in, out, width / s.head_size, s, cos_sin);
  } else {
    rotate_heads<1>(in, out, width / s.head_size, s, cos_sin);
  }
}

template <typename T>
__device__ void fill_nan(T* out, int64_t n) {
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    out[i] = from_float<T>(NAN);
  }
}

template <typename T>
__global__ void rotary_embedding_kernel(
    const int64_t* __restrict__ positions, const T* __restrict__ query,
    const T* __restrict__ key, const T* __restrict__ cos_sin_cache,
    T* __restrict__ query_out, T* __restrict__ key_out, RotaryShape s) {
  extern __shared__ float cos_sin[];
  const int64_t token = blockIdx.x;
  const int64_t pos = positions[token];
  const int64_t q = token * s.query_width;
  const int64_t k = token * s.key_width;
  if (pos < 0 || pos >= s.max_position) { // the same for the whole block
    fill_nan(query_out + q, s.query_width);
    fill_nan(key_out + k, s.key_width);
    return;
  }
  for (int64_t i = threadIdx.x; i < s.rot_dim; i += blockDim.x) {
    cos_sin[i] = to_float(cos_sin_cache[pos * s.rot_dim + i]);
  }
  __syncthreads();
  rotate_token(query + q, query_out + q, s.query_width, s, cos_sin);
  rotate_token(key + k, key_out + k, s.key_width, s, cos_sin);
}

// ---------------------------------------------------------------- launch

// Threads for `items` work items per block: whole warps, 32 to 1024.
int threads_for(int64_t items) {
  const int64_t warps = (items + kWarp - 1) / kWarp;
  return static_cast<int>(std::clamp<int64_t>(warps * kWarp, kWarp, kMaxThreads));
}

// One block per row or token; the op wrappers check rows fit in gridDim.x.
dim3 grid(int64_t blocks) {
  return dim3(static_cast<unsigned int>(blocks));
}

template <typename T>
int64_t vector_items(int64_t n) {
  return (n + kVec<T> - 1) / kVec<T>;
}

// Runs f with a value of the element type, for `using T = decltype(tag)`.
template <typename F>
cudaError_t with_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32:
      return f(float{});
    case DType::kBFloat16:
      return f(__nv_bfloat16{});
    case DType::kFloat16:
      return f(__half{});
  }
  return cudaErrorInvalidValue;
}

} // namespace

cudaError_t launch_rms_norm(
    DType dtype, const void* x, const void* weight, void* out,
    int64_t rows, int64_t n, float eps, cudaStream_t stream) {
  return with_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    rms_norm_kernel<T><<<grid(rows), threads_for(vector_items<T>(n)), 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<T*>(out), n, eps);
    return cudaGetLastError();
  });
}

cudaError_t launch_fused_add_rms_norm(
    DType dtype, const void* x, const void* residual, const void* weight,
    void* out, void* sum, int64_t rows, int64_t n, float eps, cudaStream_t stream) {
  return with_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    fused_add_rms_norm_kernel<T><<<grid(rows), threads_for(vector_items<T>(n)), 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(residual),
        static_cast<const T*>(weight), static_cast<T*>(out), static_cast<T*>(sum), n, eps);
    return cudaGetLastError();
  });
}

cudaError_t launch_silu_and_mul(
    DType dtype, const void* x, void* out, int64_t rows, int64_t d, cudaStream_t stream) {
  return with_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    silu_and_mul_kernel<T><<<grid(rows), threads_for(vector_items<T>(d)), 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(out), d);
    return cudaGetLastError();
  });
}

cudaError_t launch_rotary_embedding(
    DType dtype, const int64_t* positions, const void* query, const void* key,
    const void* cos_sin_cache, void* query_out, void* key_out,
    const RotaryShape& shape, cudaStream_t stream) {
  return with_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t widest = std::max(shape.query_width, shape.key_width);
    const size_t shared = static_cast<size_t>(shape.rot_dim) * sizeof(float);
    rotary_embedding_kernel<T>
        <<<grid(shape.num_tokens), threads_for((vector_items<T>(widest) + 1) / 2), shared,
            stream>>>(
            positions, static_cast<const T*>(query), static_cast<const T*>(key),
            static_cast<const T*>(cos_sin_cache), static_cast<T*>(query_out),
            static_cast<T*>(key_out), shape);
    return cudaGetLastError();
  });
}

} // namespace compat_kernels::cuda
