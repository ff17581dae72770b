"""Build and install the `libs` package and its compiled kernels.

    pip install torch==2.13.0                     # first: the extensions build against it
    pip install --no-build-isolation .            # or --use-pep517 -e . (what `make install` runs)

Two extensions:
- libs._C (csrc/*.cpp): the CPU kernels (NMS, soft-NMS, selective scan, causal conv1d). Always
  built, with OpenMP and the build machine's instruction set (-march=native: the scan is several
  times slower for a generic x86-64); LIBS_NO_NATIVE=1 builds portable binaries.
- libs._C_cuda (csrc/cuda/): the CUDA NMS. Built when torch has CUDA, nvcc is found and a GPU is
  visible, or FORCE_CUDA=1 (no GPU needed). LIBS_NO_CUDA=1 skips it. When it fails to compile,
  the install goes on with a clear message and libs._C alone (NMS of GPU outputs then runs on
  the CPU); with FORCE_CUDA=1 a failure stops the install.

Dependencies: requirements.txt is the one list (lines before the first "# [extra]" header are
install_requires, the lines under "# [viz]" / "# [test]" those extras); [cuda] is CUDA_EXTRA
below (built from source, see INSTALL.md). tests/test_packaging.py keeps them in agreement.
"""
import glob
import os
import sys
from typing import Dict, List

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
TORCH_PIN = "torch==2.13.0"
CUDA_EXTRA = ["mamba-ssm==2.3.2.post1", "causal-conv1d==1.7.0"]
CUDA_EXT = "libs._C_cuda"
NO_TORCH = (f"setup.py: torch is not importable at build time. Install it first "
            f"(pip install {TORCH_PIN}), then build without isolation: "
            "pip install --no-build-isolation .")


def read_requirements(path: str = os.path.join(HERE, "requirements.txt")) -> Dict[str, List[str]]:
    """{"": install_requires, "viz": [...], "test": [...]} from requirements.txt's sections."""
    sections: Dict[str, List[str]] = {"": []}
    current = ""
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if line.startswith("# [") and "]" in line:
                current = line[3:line.index("]")].strip()
                sections.setdefault(current, [])
            elif line and not line.startswith("#"):
                sections[current].append(line.split("#")[0].strip())
    return sections


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


def want_cuda() -> bool:
    """Whether to try libs._C_cuda (see the module docstring)."""
    if _flag("LIBS_NO_CUDA"):
        return False
    if _flag("FORCE_CUDA"):
        return True
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    return torch.version.cuda is not None and CUDA_HOME is not None and torch.cuda.is_available()


def extensions() -> list:
    """[libs._C] or [libs._C, libs._C_cuda]; the CUDA one last (see BuildExt)."""
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    cxx = ["-O3", "-fopenmp"] + ([] if _flag("LIBS_NO_NATIVE") else ["-march=native"])
    exts = [CppExtension("libs._C", sorted(glob.glob("csrc/*.cpp")),
                         extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])]
    if not want_cuda():
        return exts
    sources = sorted(glob.glob("csrc/cuda/*.cpp") + glob.glob("csrc/cuda/*.cu"))
    try:  # CUDAExtension itself fails without a CUDA toolkit (CUDA_HOME)
        exts.append(CUDAExtension(CUDA_EXT, sources, include_dirs=[os.path.join(HERE, "csrc")],
                                  extra_compile_args={"cxx": ["-O3"],
                                                      "nvcc": ["-O3", "--use_fast_math"]}))
    except Exception as exc:
        _cuda_failed(f"cannot be set up ({type(exc).__name__}: {exc})")
    return exts


def _cuda_failed(why: str) -> None:
    """Stop (FORCE_CUDA=1) or go on with libs._C alone, with one clear message either way."""
    if _flag("FORCE_CUDA"):
        sys.exit(f"setup.py: FORCE_CUDA=1 but {CUDA_EXT} (the CUDA NMS) {why}")
    print(f"setup.py: {CUDA_EXT} (the CUDA NMS) {why}; continuing with the CPU extension libs._C "
          "only (NMS of GPU outputs runs on the CPU). LIBS_NO_CUDA=1 skips this attempt, "
          "FORCE_CUDA=1 makes it fatal.", file=sys.stderr)


def build_ext_class():
    """torch's BuildExtension, with the CUDA extension allowed to fail (unless FORCE_CUDA=1)."""
    from torch.utils.cpp_extension import BuildExtension

    class BuildExt(BuildExtension):
        def build_extension(self, ext):
            if ext.name != CUDA_EXT:
                return super().build_extension(ext)
            try:
                return super().build_extension(ext)
            except Exception as exc:  # CompileError, a missing nvcc, an unsupported GPU arch ...
                _cuda_failed(f"did not build ({type(exc).__name__}: {exc})")
                self.extensions.remove(ext)  # the last one: nothing left to copy or install

    return BuildExt.with_options(use_ninja=True)


# console scripts: tal-<name> runs libs/commands/<name>.py, the code of `python <name>.py` /
# `python tools/<name>.py` in a checkout
COMMANDS = (
    "train", "eval", "infer", "eval_results", "rescore", "diagnose", "visualize",
    "make_synthetic", "prepare_features", "paper_table", "multi_seed", "check_env",
)  # fmt: skip
CONSOLE_SCRIPTS = [f"tal-{name.replace('_', '-')}=libs.commands.{name}:main" for name in COMMANDS]

# the configs ship as package data `libs.configs` (the repository's configs/ folder, not copied),
# so a console script run from any folder finds `configs/<name>.yaml` (libs/core/config_files.py)
CONFIG_PACKAGE = "libs.configs"
CONFIG_DATA = ["*.yaml", "_base_/*.yaml"]


def main() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit(NO_TORCH)
    reqs = read_requirements()
    extras = {name: deps for name, deps in reqs.items() if name}
    extras["cuda"] = list(CUDA_EXTRA)
    setup(
        name="actionmamba-tal",
        version="0.1.0",
        description="Temporal action localization with ActionFormer / ActionMamba (ViM, DBM) blocks",
        packages=find_packages(include=["libs", "libs.*"]) + [CONFIG_PACKAGE],
        package_dir={CONFIG_PACKAGE: "configs"},
        package_data={CONFIG_PACKAGE: CONFIG_DATA},
        python_requires=">=3.9",
        install_requires=reqs[""],
        extras_require=extras,
        ext_modules=extensions(),
        cmdclass={"build_ext": build_ext_class()},
        entry_points={"console_scripts": CONSOLE_SCRIPTS},
    )


if __name__ == "__main__":
    main()
