// Picks the kernel table for the running CPU (see kernels.h).

#include <ATen/Version.h>

#include "kernels.h"

namespace compat_kernels::cpu {
namespace {

bool use_avx2() {
#ifdef COMPAT_KERNELS_HAVE_AVX2
  // Ask ATen rather than cpuid: its answer is what its own kernels use, and
  // ATEN_CPU_CAPABILITY=default lowers it, which is how the tests reach the
  // baseline kernels. ATen reports AVX2 only with FMA too, and F16C comes with
  // every AVX2 CPU; ATen's AVX2 kernels make the same assumption.
  static const bool enabled = [] {
    const std::string cap = at::get_cpu_capability();
    return cap == "AVX2" || cap.rfind("AVX512", 0) == 0; // AVX512 implies AVX2
  }();
  return enabled;
#else
  return false;
#endif
}

} // namespace

std::string capability() {
  return use_avx2() ? "avx2" : "default";
}

template <typename T>
const KernelTable<T>& kernels() {
#ifdef COMPAT_KERNELS_HAVE_AVX2
  static const KernelTable<T> table = use_avx2() ? avx2_kernels<T>() : default_kernels<T>();
#else
  static const KernelTable<T> table = default_kernels<T>();
#endif
  return table;
}

template const KernelTable<float>& kernels<float>();
template const KernelTable<c10::BFloat16>& kernels<c10::BFloat16>();
template const KernelTable<c10::Half>& kernels<c10::Half>();

} // namespace compat_kernels::cpu
