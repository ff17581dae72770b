"""Build and install the `libs` package and its C++ extension `libs._C`.

    pip install -e . --no-build-isolation      # what `make install` runs

CPU sources (csrc/*.cpp) are always compiled, with OpenMP and the build machine's own
instruction set (-march=native): the selective scan is several times slower when built for a
generic x86-64. CUDA sources (csrc/*.cu) are added, with -DWITH_CUDA, only when torch has CUDA
and either a GPU is visible or FORCE_CUDA=1 is set. Set LIBS_NO_NATIVE=1 to build portable
binaries (e.g. a wheel for other machines).
"""
import glob
import os

from setuptools import find_packages, setup


def _extensions():
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, CppExtension, CUDAExtension

    sources = sorted(glob.glob("csrc/*.cpp"))
    cxx_flags = ["-O3", "-fopenmp", "-std=c++17"]
    if os.environ.get("LIBS_NO_NATIVE", "0") != "1":
        cxx_flags.append("-march=native")
    extra = {"cxx": cxx_flags}
    with_cuda = torch.version.cuda is not None and CUDA_HOME is not None and (
        torch.cuda.is_available() or os.environ.get("FORCE_CUDA", "0") == "1"
    )
    if with_cuda:
        sources += sorted(glob.glob("csrc/*.cu"))
        extra["nvcc"] = ["-O3", "--use_fast_math", "-std=c++17"]
        return [
            CUDAExtension(
                "libs._C",
                sources,
                define_macros=[("WITH_CUDA", None)],
                extra_compile_args=extra,
                extra_link_args=["-fopenmp"],
            )
        ]
    return [CppExtension("libs._C", sources, extra_compile_args=extra, extra_link_args=["-fopenmp"])]


def _cmdclass():
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(
    name="actionmamba-tal",
    version="0.1.0",
    description="Temporal action localization with ActionFormer / ActionMamba (ViM, DBM) blocks",
    packages=find_packages(include=["libs", "libs.*"]),
    python_requires=">=3.9",
    ext_modules=_extensions(),
    cmdclass=_cmdclass(),
)
