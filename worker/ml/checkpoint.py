"""Training state on disk without pickle: tensors in safetensors, the rest as JSON metadata.

A ``last`` state is written after every epoch so a retried job resumes from its
last completed epoch instead of starting over. It holds every random stream training
draws from, as uint8 tensors: the trainer's generator (batch order, augmentation),
torch's global CPU stream and, on a GPU, that device's stream (dropout). Python's
``random`` and NumPy are not used by training, so they are not saved.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from worker.ml.training_state import Progress, Trainer


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write then rename: a reader (or a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def save_model(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    atomic_save(dict(model.state_dict()), path, metadata)


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_state(trainer: Trainer, path: Path, metadata: dict[str, str]) -> None:
    opt_tensors, opt_json = _split_optimizer(trainer.optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    tensors.update(opt_tensors)
    tensors["rng"] = trainer.generator.get_state()
    tensors["rng.cpu"] = torch.get_rng_state()
    device = _device_of(trainer.model)
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    meta = {
        **metadata,
        "optimizer": json.dumps(opt_json),
        "plateau": json.dumps(trainer.plateau.state_dict()),
        "progress": json.dumps(trainer.progress.to_json()),
    }
    atomic_save(tensors, path, meta)


def _device_of(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@dataclass
class SavedState:
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> SavedState:
        with safe_open(str(path), framework="pt") as f:
            return cls({k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {}))

    @property
    def progress(self) -> Progress:
        return Progress(**json.loads(self.metadata["progress"]))

    def load_into(self, trainer: Trainer) -> None:
        model_sd = {k[len("model.") :]: v for k, v in self.tensors.items() if k.startswith("model.")}
        trainer.model.load_state_dict(model_sd)
        opt_json = json.loads(self.metadata["optimizer"])
        state: dict[int, dict[str, Any]] = {}
        for key, value in self.tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                state.setdefault(int(pid), {})[name] = value
        for key, value in opt_json["scalars"].items():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = value
        trainer.optimizer.load_state_dict({"state": state, "param_groups": opt_json["param_groups"]})
        trainer.plateau.load_state_dict(json.loads(self.metadata["plateau"]))
        trainer.generator.set_state(self.tensors["rng"])
        # States written before these were saved lack them: such a run resumes on the reseeded streams.
        if "rng.cpu" in self.tensors:
            torch.set_rng_state(self.tensors["rng.cpu"])
        device = _device_of(trainer.model)
        if "rng.cuda" in self.tensors and device.type == "cuda":  # a CPU run resumed on a GPU keeps its seed
            torch.cuda.set_rng_state(self.tensors["rng.cuda"], device)
        trainer.progress = self.progress
