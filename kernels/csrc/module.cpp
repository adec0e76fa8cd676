// An empty CPython extension module. Importing compat_kernels._C dlopens this
// shared object, which runs the TORCH_LIBRARY static registrations; all ops are
// then reached through torch.ops.compat_kernels. Only the stable ABI is used,
// so one abi3 wheel serves every CPython the build torch supports.

// BuildExtension passes its own -DPy_LIMITED_API (3.10 for torch 2.13) while
// the wheel is tagged cp39-abi3; pin the level to the tag. PyModule_Create is
// part of the 3.9 stable ABI. Non-abi3 fallback builds leave it undefined.
#ifdef Py_LIMITED_API
#undef Py_LIMITED_API
#define Py_LIMITED_API 0x03090000
#endif

#include <Python.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",
      "compat_kernels operator library; use torch.ops.compat_kernels.",
      -1,
      nullptr,
  };
  return PyModule_Create(&module_def);
}
