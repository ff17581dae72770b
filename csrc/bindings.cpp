// The one Python module of the CPU extension, `libs._C`.
// Functions are contributed by the kernel files through ExtRegistrar (see ext_registry.h).
// The CUDA kernels are a separate extension, libs._C_cuda (csrc/cuda/bindings_cuda.cpp).
#include "ext_registry.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Compiled CPU kernels of the ActionMamba TAL codebase (NMS, selective scan, conv1d).";
  for (auto& fn : libs_ext::registered_fns()) fn(m);
}
