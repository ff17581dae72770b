"""The docs are true: every command they show parses with the real parser of that command (the
quick ones really run, on tiny data), every make target and script they name exists, and every
repository path they name is there.

Commands are read from the ```bash blocks of README.md, INSTALL.md and docs/*.md. Synopsis
notation is read as the docs mean it: `[--x X]` is the option given, `a|b` and `{a,b}` the first
choice, `...` dropped. A deprecated flag in the docs fails (its alias prints "formerly").
"""
import contextlib
import glob
import importlib
import io
import os
import re
import shlex

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "INSTALL.md"] + sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
# programs the docs show that are not this project's (installers, other tools): not run here
EXTERNAL = ("pip", "python3", "huggingface-cli", "nvcc", "git", "cd", ".", "source", "export",
            "MAX_JOBS", "CAUSAL_CONV1D_FORCE_BUILD", "TORCH_CUDA_ARCH_LIST", "pytest")
# paths the docs name that a run creates or the user supplies (not in the repository)
NOT_SHIPPED = ("data/mydata", "data/synthetic", "data/thumos/features", "data/anet/",
               "data/hacs/", "data/fineaction/", "data/features", "data/<", "demo_output",
               "ckpt", "logs/",
               "docs/demo_last_run.json",  # written by tools/demo.py --update-readme
               "libs/utils/metrics.py", "libs/utils/postprocessing.py")  # the published code's


def doc_text(name: str) -> str:
    with open(os.path.join(REPO, name), encoding="utf8") as f:
        return f.read()


def shell_blocks(text: str) -> list:
    return re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)


def command_lines(block: str) -> list:
    """Commands of a shell block (continuations joined, comments dropped, split at && and ;)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        words, current = shlex.split(line, comments=True), []
        for w in words + ["&&"]:
            if w in ("&&", ";") or w.endswith(";"):
                current += [w[:-1]] if w.endswith(";") and w != ";" else []
                if current:
                    out.append(shlex.join(current))
                current = []
            else:
                current.append(w)
    return out


# numeric placeholders of the synopses, as values their parsers accept
NUMBERS = {"T1": "0.3", "T2": "0.5", "N": "2", "S": "1"}


def normalise(words: list) -> list:
    """Synopsis notation -> one concrete command line (VAR=value prefixes dropped)."""
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    out = []
    for w in words:
        w = NUMBERS.get(w, w)
        w = w.replace("[", "").replace("]", "")
        if w in ("...", "…", "") or w.endswith("..."):
            continue
        if re.fullmatch(r"\{[^}]*\}", w):
            w = w[1:-1].split(",")[0]
        if "|" in w and not w.startswith("--opts"):
            w = w.split("|")[0]
        out.append(w)
    return out


INLINE = re.compile(r"(?<!`)`((?:python|\.venv/bin/python|torchrun|tal-|make |bash )[^`\n]+)`")


def all_commands() -> list:
    """(doc, command) for every command of a shell block and every inline `python ...` span."""
    found = []
    for name in DOCS:
        text = doc_text(name)
        for block in shell_blocks(text):
            found += [(name, line) for line in command_lines(block)]
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        spans = [span for span in INLINE.findall(prose) if not set(span) & set("<*")]  # templates
        found += [(name, line) for span in spans for line in command_lines(span)]
    return found


def script_of(words: list):
    """(script path, its arguments) of a project command line, or None for an external one."""
    head = words[0] if words else ""
    if head == "torchrun":
        i = next((i for i, w in enumerate(words) if w.endswith(".py")), None)
        return ("torchrun", []) if i is None else (words[i], words[i + 1:])
    if head in ("python", ".venv/bin/python") and len(words) > 1 and words[1].endswith(".py"):
        return words[1], words[2:]
    if head == "bash" and len(words) > 1:
        return words[1], words[2:]
    if head == "make" or head.startswith("tal-"):
        return head, words[1:]
    return None


COMMAND_MODULES = {"train.py": "train", "eval.py": "eval"}


def parse_with_real_parser(script: str, args: list) -> None:
    """Parse `args` with the command's own parser; fail on errors and deprecated flags."""
    if script.startswith("tal-"):  # a console script: tal-<name> runs libs.commands.<name>
        name = script[4:].replace("-", "_")
    else:
        name = COMMAND_MODULES.get(script) or os.path.basename(script)[:-3]
    if script == "tools/demo.py":
        from tools import demo

        demo.parse_args(args)
        return
    module = importlib.import_module(f"libs.commands.{name}")
    parse = getattr(module, "parse_args", None) or (lambda a: module.build_parser().parse_args(a))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            parse(args)
        except SystemExit as exc:
            raise AssertionError(f"{script} {shlex.join(args)}: {err.getvalue().strip()}") from exc
    assert "formerly" not in err.getvalue() and "deprecated" not in err.getvalue(), err.getvalue()


def check_command(doc: str, line: str) -> None:
    words = normalise(shlex.split(line))
    target = script_of(words)
    if target is None:
        assert words[0] in EXTERNAL or words[0].startswith(("python", "pip")), (
            f"{doc}: `{line}`: not a project command and not a known external one")
        return
    script, args = target
    if script == "torchrun":
        return  # `torchrun ...` in prose: no script named
    if script == "make":
        targets = re.findall(r"^([a-z-]+):", doc_text("Makefile"), flags=re.M)
        assert all(a in targets for a in args), f"{doc}: `{line}`: no such make target"
    elif script.endswith(".sh"):
        assert os.path.isfile(os.path.join(REPO, script)), f"{doc}: `{line}`: no {script}"
    elif script == "tools/benchmark.py":
        from tools import benchmark

        assert args[0] in benchmark.__doc__ + open(benchmark.__file__).read(), line
    else:
        assert script.startswith("tal-") or os.path.isfile(os.path.join(REPO, script)), line
        if args:  # a bare `python train.py` names the script: existing is enough
            parse_with_real_parser(script, args)


@pytest.mark.parametrize("doc, line", all_commands(), ids=lambda v: v[:60])
def test_every_documented_command_parses(doc, line):
    check_command(doc, line)


PATH_RE = re.compile(r"(?<![\w./-])((?:configs|tools|libs|tests|docs|csrc|data)/[\w./<>*{},-]*[\w*]"
                     r"|[\w-]+\.(?:py|sh|md|txt|yaml))(?![\w/])")


@pytest.mark.parametrize("doc", DOCS)
def test_every_named_path_exists(doc):
    missing = []
    for path in sorted(set(PATH_RE.findall(doc_text(doc)))):
        if path.startswith(NOT_SHIPPED) or "<" in path or "{" in path:
            continue
        if "/" not in path and not os.path.exists(os.path.join(REPO, path)):
            continue  # a bare file name (results.json, my_block.py ...) is not a repository path
        if not glob.glob(os.path.join(REPO, path)):
            missing.append(path)
    assert not missing, f"{doc} names paths that do not exist: {missing}"


def test_quick_documented_commands_really_run(tmp_path, monkeypatch, capsys):
    """The worked custom example's first two steps, as the README shows them, on its data."""
    from libs.commands import make_synthetic, prepare_features

    os.makedirs(tmp_path / "data")
    os.symlink(os.path.join(REPO, "data", "custom_example"), tmp_path / "data" / "custom_example")
    os.symlink(os.path.join(REPO, "configs"), tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    lines = [line for _, line in all_commands() if "custom_example" in line]
    synth = next(line for line in lines if "make_synthetic.py" in line)
    verify = next(line for line in lines if "prepare_features.py verify" in line)
    assert make_synthetic.main(shlex.split(synth)[2:]) == 0
    assert prepare_features.main(shlex.split(verify)[2:]) == 0
    assert len(os.listdir(tmp_path / "data" / "synthetic_custom_example")) >= 20
