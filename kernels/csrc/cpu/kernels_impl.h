#pragma once

// Assembles the kernel table for the instruction set this translation unit is
// compiled for. Only kernels_<isa>.cpp include this, after defining
// CPU_CAPABILITY (and, for AVX2, enabling the target ISA).

#include "activation_kernels.h"
#include "kernels.h"
#include "norm_kernels.h"
#include "rotary_kernels.h"

namespace compat_kernels::cpu::CPU_CAPABILITY {

template <typename T>
KernelTable<T> make_kernel_table() {
  return KernelTable<T>{
      &rms_norm_kernel<T>,
      &fused_add_rms_norm_kernel<T>,
      &silu_and_mul_kernel<T>,
      &rotary_embedding_kernel<T>,
  };
}

} // namespace compat_kernels::cpu::CPU_CAPABILITY
