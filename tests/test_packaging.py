"""Packaging: setup.py and requirements.txt cannot drift, every import is declared (and every
declared runtime dependency used), an isolated build stops with one line, and the CUDA
extension can fail or be skipped without taking the CPU one down."""
import ast
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import types

import pytest

from libs.ops import _gpu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# import name -> distribution name, where they differ
DIST_OF = {"yaml": "pyyaml", "torch.utils.tensorboard": "tensorboard"}
# imported only behind a probe (GPU packages) or never at run time (the build)
OPTIONAL = {"mamba_ssm", "causal_conv1d", "selective_scan_cuda", "causal_conv1d_cuda",
            "setuptools"}


@pytest.fixture(scope="module")
def setup_mod():
    """setup.py as a module (its `main()` only runs as __main__)."""
    spec = importlib.util.spec_from_file_location("setup_under_test", os.path.join(REPO, "setup.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def dist_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def third_party_imports() -> dict:
    """{distribution: first file importing it} over libs/, tools/, train.py and eval.py."""
    files = [os.path.join(REPO, f) for f in ("train.py", "eval.py")]
    for top in ("libs", "tools"):
        for root, _, names in os.walk(os.path.join(REPO, top)):
            files += [os.path.join(root, n) for n in names if n.endswith(".py")]
    local = {"libs", "tools", "tests", "__future__"}
    found = {}
    for path in files:
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                key = next((k for k in DIST_OF if name == k or name.startswith(k + ".")), None)
                top = name.split(".")[0]
                if key is None and (top in sys.stdlib_module_names or top in local):
                    continue
                found.setdefault(DIST_OF.get(key or top, top).lower(), os.path.relpath(path, REPO))
    return found


def test_requirements_sections_are_setup_py_metadata(setup_mod):
    reqs = setup_mod.read_requirements()
    assert reqs[""][0] == setup_mod.TORCH_PIN == "torch==2.13.0"
    assert {dist_name(r) for r in reqs["viz"]} == {"matplotlib"}
    assert {"pytest", "hypothesis"} <= {dist_name(r) for r in reqs["test"]}
    assert "pandas" in {dist_name(r) for r in reqs[""]}
    runtime = {dist_name(r) for r in reqs[""]}
    assert not runtime & {dist_name(r) for r in reqs["test"] + reqs["viz"]}


def test_cuda_extra_pins_match_the_probes_and_install_md(setup_mod):
    assert setup_mod.CUDA_EXTRA == [_gpu.MAMBA_PIN, _gpu.CONV_PIN]
    install_md = open(os.path.join(REPO, "INSTALL.md")).read()
    for pin in setup_mod.CUDA_EXTRA:
        assert pin in install_md, f"INSTALL.md does not recommend {pin}"
        assert pin in _gpu.MAMBA_FIX + _gpu.CONV_FIX


def test_every_import_is_declared(setup_mod):
    reqs = setup_mod.read_requirements()
    declared = {dist_name(r) for deps in reqs.values() for r in deps}
    missing = {d: f for d, f in third_party_imports().items()
               if d not in declared and d not in OPTIONAL}
    assert not missing, f"imported but not in requirements.txt: {missing}"


def test_every_runtime_dependency_is_used(setup_mod):
    used = set(third_party_imports())
    unused = [r for r in setup_mod.read_requirements()[""] if dist_name(r) not in used]
    assert not unused, f"declared in requirements.txt but imported nowhere: {unused}"


def test_isolated_build_stops_with_one_line():
    """Build isolation hides the installed torch: setup.py must say what to do, in one line."""
    code = textwrap.dedent("""
        import runpy, sys
        sys.modules["torch"] = None  # what an isolated build environment looks like
        sys.argv = ["setup.py", "egg_info"]
        runpy.run_path("setup.py", run_name="__main__")
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "pip install torch==2.13.0" in lines[0] and "--no-build-isolation" in lines[0]


def test_cuda_extension_switches(setup_mod, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("LIBS_NO_CUDA", "1")
    monkeypatch.setenv("FORCE_CUDA", "1")
    assert not setup_mod.want_cuda()  # the opt-out wins
    assert [e.name for e in setup_mod.extensions()] == ["libs._C"]
    monkeypatch.delenv("LIBS_NO_CUDA")
    assert setup_mod.want_cuda()
    monkeypatch.delenv("FORCE_CUDA")
    import torch

    if torch.version.cuda is None:
        assert not setup_mod.want_cuda()  # a CPU torch never tries nvcc on its own


def test_forced_cuda_without_toolkit_is_fatal_and_clear(setup_mod, monkeypatch):
    import torch.utils.cpp_extension as cpp

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("FORCE_CUDA", "1")
    monkeypatch.setattr(cpp, "CUDAExtension", lambda *a, **k: (_ for _ in ()).throw(
        OSError("CUDA_HOME environment variable is not set")))
    with pytest.raises(SystemExit, match="FORCE_CUDA=1 but libs._C_cuda .*CUDA_HOME"):
        setup_mod.extensions()
    monkeypatch.delenv("FORCE_CUDA")
    monkeypatch.setattr(setup_mod, "want_cuda", lambda: True)
    assert [e.name for e in setup_mod.extensions()] == ["libs._C"]  # auto: go on without it


def test_failing_cuda_extension_keeps_the_cpu_one(setup_mod, tmp_path, capsys, monkeypatch):
    """A CUDA extension that does not compile: the CPU extension is still built and installed."""
    from setuptools import Distribution, Extension

    monkeypatch.delenv("FORCE_CUDA", raising=False)
    (tmp_path / "ok.c").write_text("int libs_ok(void) { return 1; }\n")
    (tmp_path / "bad.c").write_text("this is not C;\n")
    monkeypatch.chdir(tmp_path)
    dist = Distribution({"name": "t", "ext_modules": [Extension("libs._C", ["ok.c"]),
                                                      Extension(setup_mod.CUDA_EXT, ["bad.c"])],
                         "cmdclass": {"build_ext": setup_mod.build_ext_class()}})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib, cmd.build_temp = str(tmp_path / "lib"), str(tmp_path / "tmp")
    dist.run_command("build_ext")
    built = os.listdir(tmp_path / "lib" / "libs")
    assert any(n.startswith("_C.") for n in built) and not any("_C_cuda" in n for n in built)
    assert "libs._C_cuda (the CUDA NMS) did not build" in capsys.readouterr().err


def test_checkout_without_binaries_uses_the_installed_build(monkeypatch, tmp_path):
    """A source checkout that shadows a non-editable install loads the installed libs._C; the
    checkout's own *.egg-info (which lists no binaries) is skipped."""
    import importlib.machinery
    import importlib.metadata
    import importlib.util

    from libs.ops import _ext

    def dist(names):
        d = types.SimpleNamespace(locate_file=lambda p: tmp_path / p)
        d.files = [importlib.metadata.PackagePath(n) for n in names]
        for f in d.files:
            f.dist = d
        return d

    so_name = "libs/_C.cpython-311-x86_64-linux-gnu.so"
    dists = [dist(["libs/__init__.py"]), dist(["libs/__init__.py", so_name])]
    monkeypatch.setattr(importlib.metadata, "distributions", lambda name: dists)
    loaded = []

    class Loader:
        def create_module(self, spec):
            return None

        def exec_module(self, module):
            module.marker = "installed"

    def spec_from_file_location(name, path):
        loaded.append((name, path))
        return importlib.machinery.ModuleSpec(name, Loader())
    monkeypatch.setattr(importlib.util, "spec_from_file_location", spec_from_file_location)
    module = _ext._installed_copy("_C")
    assert module.marker == "installed"
    assert loaded == [("libs._C", str(tmp_path / so_name))]
    assert _ext._installed_copy("_C_cuda") is None


def test_console_scripts_map_to_main_functions(setup_mod):
    """Every tal-<name> entry point names libs.commands.<name>:main, an existing function, and
    the checkout's launcher (train.py, eval.py, tools/<name>.py) runs the same function."""
    import importlib

    assert len(setup_mod.CONSOLE_SCRIPTS) == len(setup_mod.COMMANDS)
    for spec in setup_mod.CONSOLE_SCRIPTS:
        script, target = spec.split("=")
        module_name, func = target.split(":")
        name = module_name.rsplit(".", 1)[1]
        assert script == "tal-" + name.replace("_", "-")
        main = getattr(importlib.import_module(module_name), func)
        assert callable(main), spec
        launcher = name + ".py" if name in ("train", "eval") else os.path.join("tools", name + ".py")
        text = open(os.path.join(REPO, launcher)).read()
        assert f"from {module_name} import main" in text, f"{launcher} does not run {target}"


def test_package_data_holds_every_config(setup_mod, tmp_path):
    """setuptools' own file list for libs.configs (build_py) is every YAML under configs/."""
    from setuptools import Distribution

    dist = Distribution({"name": "t", "packages": [setup_mod.CONFIG_PACKAGE],
                         "package_dir": {setup_mod.CONFIG_PACKAGE: os.path.join(REPO, "configs")},
                         "package_data": {setup_mod.CONFIG_PACKAGE: setup_mod.CONFIG_DATA}})
    cmd = dist.get_command_obj("build_py")
    cmd.build_lib = str(tmp_path)
    cmd.ensure_finalized()
    shipped = {f for _, _, _, files in cmd.data_files for f in files}
    on_disk = set()
    for root, _, names in os.walk(os.path.join(REPO, "configs")):
        rel = os.path.relpath(root, os.path.join(REPO, "configs"))
        on_disk |= {os.path.normpath(os.path.join(rel, n)) for n in names if n.endswith(".yaml")}
    assert on_disk and shipped == on_disk, sorted(on_disk ^ shipped)


def test_packaged_config_found_from_any_folder(tmp_path, monkeypatch, caplog):
    """From a folder without configs/, `configs/<name>.yaml` and `<name>.yaml` load the shipped
    file (the same resolved values, `_base_` included) and the log says which file was used."""
    from libs.core import config_files
    from libs.core.config import ConfigError, config_to_dict, load_config

    name = "thumos_internvideo2_6b_dbm.yaml"
    monkeypatch.chdir(REPO)
    expected = config_to_dict(load_config(os.path.join("configs", name)))
    monkeypatch.chdir(tmp_path)
    for asked in (f"configs/{name}", f"./configs/{name}", name):
        with caplog.at_level("WARNING", logger=config_files.__name__):
            got = config_to_dict(load_config(asked))
        assert "using the packaged copy" in caplog.text
        caplog.clear()
        assert os.path.samefile(got.pop("config_path"), os.path.join(REPO, "configs", name))
        assert got == {k: v for k, v in expected.items() if k != "config_path"}
    with pytest.raises(ConfigError, match="config file not found: configs/nope.yaml"):
        load_config("configs/nope.yaml")
    (tmp_path / name).write_text("_base_: _base_/thumos_internvideo2_6b.yaml\n")
    with pytest.raises(ConfigError, match="_base_ file not found"):
        load_config(name)  # a file in the current folder wins over the packaged one
