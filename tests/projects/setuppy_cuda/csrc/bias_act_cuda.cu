// The CUDA kernel of biasact::bias_relu, compiled only on machines with a GPU (setup.py).
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

namespace biasact {

void check_inputs(const at::Tensor& x, const at::Tensor& bias);  // bias_act.cpp

template <typename scalar_t>
__global__ void bias_relu_kernel(const scalar_t* __restrict__ x,
                                 const scalar_t* __restrict__ bias, scalar_t* __restrict__ out,
                                 int64_t n, int64_t cols) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const scalar_t v = x[i] + bias[i % cols];
    out[i] = v > scalar_t(0) ? v : scalar_t(0);
  }
}

static at::Tensor bias_relu_cuda(const at::Tensor& x_in, const at::Tensor& bias_in) {
  check_inputs(x_in, bias_in);
  TORCH_CHECK(bias_in.device() == x_in.device(), "bias_relu: x and bias are on different devices");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor bias = bias_in.contiguous();
  at::Tensor out = at::empty_like(x);
  const int64_t n = x.numel();
  if (n == 0) return out;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 4096));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bias_relu_cuda", [&] {
    bias_relu_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), bias.const_data_ptr<scalar_t>(),
        out.mutable_data_ptr<scalar_t>(), n, bias.numel());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace biasact

TORCH_LIBRARY_IMPL(biasact, CUDA, m) { m.impl("bias_relu", &biasact::bias_relu_cuda); }
