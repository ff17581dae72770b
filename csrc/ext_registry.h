// Self-registration of extension entry points.
//
// Every csrc/*.cpp file that exposes functions to Python defines one static
// `ExtRegistrar` whose callback adds its functions to the module. bindings.cpp
// owns the single PYBIND11_MODULE and runs every registered callback, so a new
// kernel file never has to edit a shared bindings list.
#pragma once
#include <torch/extension.h>

#include <functional>
#include <vector>

namespace libs_ext {

using RegisterFn = std::function<void(pybind11::module&)>;

inline std::vector<RegisterFn>& registered_fns() {
  static std::vector<RegisterFn> fns;  // function-local static: safe across translation units
  return fns;
}

struct ExtRegistrar {
  explicit ExtRegistrar(RegisterFn fn) { registered_fns().push_back(std::move(fn)); }
};

}  // namespace libs_ext
