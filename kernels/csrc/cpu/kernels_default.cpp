// The kernels built for the compiler's baseline ISA (SSE2 on x86-64): the
// fallback on any CPU. ATen's vec headers pick their generic Vectorized
// implementation when no CPU_CAPABILITY_<ISA> macro is defined.

#define CPU_CAPABILITY DEFAULT
#define CPU_CAPABILITY_DEFAULT

#include "kernels_impl.h"

namespace compat_kernels::cpu {

template <typename T>
KernelTable<T> default_kernels() {
  return DEFAULT::make_kernel_table<T>();
}

template KernelTable<float> default_kernels<float>();
template KernelTable<c10::BFloat16> default_kernels<c10::BFloat16>();
template KernelTable<c10::Half> default_kernels<c10::Half>();

} // namespace compat_kernels::cpu
