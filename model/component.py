"""Save / load for every model component (DESIGN 3.4): `config.json` + `model.safetensors`.

A component is an nn.Module built from one config dataclass (`Module(config)`); the config
is stored whole, so `from_pretrained(dir)` rebuilds the exact module. No pickles.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

T = TypeVar("T", bound="Component")


class Component(torch.nn.Module):
    config_class: type  # the dataclass this component is built from

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
        """`dtype` (e.g. torch.float16) stores floating weights smaller; loading casts them back."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg = dataclasses.asdict(self.config)
        cfg["_class"] = type(self).__name__
        (d / "config.json").write_text(json.dumps(cfg, indent=1))
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        save_file(state, str(d / "model.safetensors"))
        return d

    @classmethod
    def from_pretrained(cls: type[T], directory: str | Path, device: str | torch.device = "cpu") -> T:
        d = Path(directory)
        cfg_path = d / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{d}: no config.json; is this a {cls.__name__} directory?")
        raw = json.loads(cfg_path.read_text())
        name = raw.pop("_class", cls.__name__)
        if name != cls.__name__:
            raise ValueError(f"{d} holds a {name}, not a {cls.__name__}")
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        config = cls.config_class(**{k: _tuple(v) for k, v in raw.items() if k in fields})
        module = cls(config)
        state = load_file(str(d / "model.safetensors"), device=str(device))
        module.load_state_dict(state)
        return module.to(device).eval()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v
