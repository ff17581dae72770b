// The one Python module of the extension, `libs._C`.
// Functions are contributed by the kernel files through ExtRegistrar (see ext_registry.h).
#include "ext_registry.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Compiled kernels of the ActionMamba TAL codebase (NMS, selective scan).";
  m.def("compiled_with_cuda", []() {
#if defined(WITH_CUDA)
    return true;
#else
    return false;
#endif
  });
  for (auto& fn : libs_ext::registered_fns()) fn(m);
}
