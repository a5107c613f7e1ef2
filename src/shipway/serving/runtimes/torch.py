"""The ``torch`` runtime: a TorchScript module on the CPU.

The file is ``model.pt``, ``model.pth`` or ``model.ts``, else the one ``*.pt``, ``*.pth`` or
``*.ts`` file, written by ``torch.jit.save`` from ``torch.jit.script`` or ``torch.jit.trace``.
A ``torch.save`` checkpoint needs the user's Python classes to rebuild and is refused.

Rows become one float32 tensor (``SHIPWAY_TORCH_DTYPE`` may choose float64 or int64) and run
under ``torch.inference_mode()``; the prediction is the output tensor, or the first one when the
module returns a tuple or list.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from shipway.serving.errors import BadInput, ModelLoadError
from shipway.serving.runtime import Runtime
from shipway.serving.runtimes._artifact import find_artifact

__all__ = ["TorchRuntime"]

DTYPE_ENV = "SHIPWAY_TORCH_DTYPE"
DTYPES = ("float32", "float64", "int64")

NAMES = ("model.pt", "model.pth", "model.ts")
SUFFIXES = (".pt", ".pth", ".ts")


class TorchRuntime(Runtime):
    """Serves a TorchScript module."""

    name = "torch"

    def load(self) -> None:
        import torch

        dtype = self.environment.get(DTYPE_ENV, "float32")
        if dtype not in DTYPES:
            raise ModelLoadError(f"{DTYPE_ENV}={dtype!r} is not one of {', '.join(DTYPES)}")
        path = find_artifact(self.model_dir, NAMES, SUFFIXES)
        try:
            load: Any = torch.jit.load  # untyped in torch; Any when torch is not installed
            module = load(str(path), map_location="cpu")
        except Exception as exc:  # torch reports a bad archive as RuntimeError, others vary
            reason = str(exc).split(". ", 1)[0]  # torch goes on to guess at corruption
            raise ModelLoadError(
                f"{path} is not a TorchScript model ({reason}); save the model with"
                " torch.jit.save(torch.jit.script(model), path) or torch.jit.trace(model, example)"
            ) from exc
        module.eval()
        torch.set_num_threads(self.threads)
        # Torch allows this once, before any inter-op work: a second model keeps the first's.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        self._dtype = np.dtype(dtype)
        self._module = module

    def predict(self, inputs: Any) -> Any:
        import torch

        try:
            tensor = torch.from_numpy(np.ascontiguousarray(inputs, dtype=self._dtype))
        except (ValueError, TypeError) as exc:
            raise BadInput(f"cannot convert the rows to {self._dtype.name}: {exc}") from exc
        with torch.inference_mode():
            try:
                output = self._module(tensor)
            except RuntimeError as exc:  # shape and dtype mismatches
                raise BadInput(_message(exc)) from exc
        if isinstance(output, tuple | list):
            output = output[0]
        return output.numpy() if isinstance(output, torch.Tensor) else np.asarray(output)


def _message(exc: Exception) -> str:
    """The last line of torch's message: TorchScript puts its traceback first."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
