// add_one(x) = x + 1, written against PyTorch's stable ABI only: torch::stable::Tensor and
// the C shim (aoti_torch_* / torch_*), registered with STABLE_TORCH_LIBRARY. No at:: or
// c10:: symbol is used, so the binary loads under every torch from its minimum on.
#include <Python.h>

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <cstdint>

namespace {

torch::stable::Tensor add_one(torch::stable::Tensor x) {
  STD_TORCH_CHECK(x.scalar_type() == torch::headeronly::ScalarType::Float,
                  "add_one: expected a float32 tensor");
  torch::stable::Tensor input = torch::stable::contiguous(x);
  torch::stable::Tensor out = torch::stable::empty_like(input);
  const float* src = input.const_data_ptr<float>();
  float* dst = out.mutable_data_ptr<float>();
  const int64_t n = input.numel();
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = src[i] + 1.0f;
  }
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY(stable_ext, m) {
  m.def("add_one(Tensor x) -> Tensor");
}

STABLE_TORCH_LIBRARY_IMPL(stable_ext, CPU, m) {
  m.impl("add_one", TORCH_BOX(&add_one));
}

// An importable module through the limited API only: importing stable_ext._C loads the
// library, whose static initialisers register the op.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
