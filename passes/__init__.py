"""The pass registry: pass name -> module with NAME and run(module, ctx).

One pass per file; `agentc-opt -p a,b` and the driver's stages look passes up here by
name, and `run_pipeline` runs them through the upstream MLIR PassManager (`pm.add`),
so IR printing and timing work as in mlir-opt. test/python/test_registry.py checks that
every file here is registered under its own NAME.
"""

from __future__ import annotations

import importlib
import pkgutil

from mlir import passmanager

_MODULES = None


def registry() -> dict:
    """name -> pass module, discovered from the files of this package."""
    global _MODULES
    if _MODULES is None:
        found = {}
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
            if info.name.startswith("_"):
                continue
            mod = importlib.import_module(f"{__name__}.{info.name}")
            found[mod.NAME] = mod
        _MODULES = found
    return _MODULES


def run_pipeline(module, names, ctx=None, print_ir_after_all: bool = False) -> None:
    """Run the named passes in order on `module` through an MLIR PassManager; each gets
    `ctx` (an agentc.state.PassContext; a default one when None)."""
    from agentc.diagnostics import UsageError
    from agentc.state import PassContext

    ctx = ctx if ctx is not None else PassContext()
    reg = registry()
    pm = passmanager.PassManager("builtin.module")
    for spec in names:
        name, args = parse_pass_spec(spec)
        if name not in reg:
            raise UsageError(f"unknown pass '{name}'; known passes: {', '.join(sorted(reg))}")
        mod = reg[name]
        pm.add(lambda op, _pass, mod=mod, args=args: mod.run(op, ctx, **args), name)
    if print_ir_after_all:
        pm.enable_ir_printing(print_after_all=True)
    pm.run(module.operation)


def parse_pass_spec(spec: str) -> tuple[str, dict[str, str]]:
    """`name{key=value key2=value}` (mlir-opt's option syntax) -> (name, options)."""
    from agentc.diagnostics import UsageError

    spec = spec.strip()
    if "{" not in spec:
        return spec, {}
    if not spec.endswith("}"):
        raise UsageError(f"malformed pass options in '{spec}'; write name{{key=value}}")
    name, body = spec[:-1].split("{", 1)
    args = {}
    for item in body.replace(",", " ").split():
        if "=" not in item:
            raise UsageError(f"malformed pass option '{item}' in '{spec}'; write key=value")
        k, v = item.split("=", 1)
        args[k.strip()] = v.strip()
    return name.strip(), args
