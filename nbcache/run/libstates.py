"""How the process-wide states libraries keep are read and set: numpy, pandas,
scikit-learn, torch, tensorflow and matplotlib.

None of these functions imports a library: each runs only once its module is loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from .state import loaded, present

__all__ = [
    "pandas_apply",
    "pandas_read",
    "printoptions_apply",
    "rc_apply",
    "rc_read",
    "rc_reset",
    "seterr_apply",
    "sklearn_apply",
    "tf_apply",
    "tf_read",
    "torch_apply",
    "torch_cudnn_apply",
    "torch_cudnn_read",
    "torch_read",
]


def printoptions_apply(changes: Mapping[str, Any]) -> None:
    loaded("numpy").set_printoptions(**present(changes))


def seterr_apply(changes: Mapping[str, Any]) -> None:
    loaded("numpy").seterr(**present(changes))


def pandas_read() -> Any:
    config = sys.modules.get("pandas._config.config")
    options = getattr(config, "_global_config", None)
    out: dict[str, Any] = {}
    if isinstance(options, dict):
        _flatten(options, "", out)
    return out


def _flatten(tree: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in tree.items():
        if isinstance(value, dict):
            _flatten(value, f"{prefix}{key}.", out)
        else:
            out[prefix + key] = value


def pandas_apply(changes: Mapping[str, Any]) -> None:
    pandas = loaded("pandas")
    for key, value in present(changes).items():
        try:
            pandas.set_option(key, value)
        except (KeyError, ValueError):  # an option this pandas does not have (OptionError)
            continue


def sklearn_apply(changes: Mapping[str, Any]) -> None:
    sklearn = loaded("sklearn")
    for key, value in present(changes).items():
        try:
            sklearn.set_config(**{key: value})
        except TypeError:  # a setting this scikit-learn does not have
            continue


def torch_read() -> Any:
    torch = loaded("torch")
    return {
        "default_dtype": torch.get_default_dtype(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "num_threads": torch.get_num_threads(),
    }


def torch_apply(changes: Mapping[str, Any]) -> None:
    torch = loaded("torch")
    changes = present(changes)
    if "default_dtype" in changes:
        torch.set_default_dtype(changes["default_dtype"])
    if "deterministic" in changes or "deterministic_warn_only" in changes:
        torch.use_deterministic_algorithms(
            changes.get("deterministic", torch.are_deterministic_algorithms_enabled()),
            warn_only=changes.get(
                "deterministic_warn_only", torch.is_deterministic_algorithms_warn_only_enabled()
            ),
        )
    if "float32_matmul_precision" in changes:
        torch.set_float32_matmul_precision(changes["float32_matmul_precision"])
    if "num_threads" in changes:
        torch.set_num_threads(changes["num_threads"])


def torch_cudnn_read() -> Any:
    cudnn = loaded("torch").backends.cudnn
    return {"benchmark": bool(cudnn.benchmark), "deterministic": bool(cudnn.deterministic)}


def torch_cudnn_apply(changes: Mapping[str, Any]) -> None:
    cudnn = loaded("torch").backends.cudnn
    for key, value in present(changes).items():
        setattr(cudnn, key, value)


_TF_FLAGS = {
    # name: (getter, setter) under tf.config
    "functions_run_eagerly": ("functions_run_eagerly", "run_functions_eagerly"),
    "soft_device_placement": ("get_soft_device_placement", "set_soft_device_placement"),
    "intra_op_threads": (
        "threading.get_intra_op_parallelism_threads",
        "threading.set_intra_op_parallelism_threads",
    ),
    "inter_op_threads": (
        "threading.get_inter_op_parallelism_threads",
        "threading.set_inter_op_parallelism_threads",
    ),
}


def _tf_attr(path: str) -> Any:
    value = loaded("tensorflow").config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def tf_read() -> Any:
    return {name: _tf_attr(get)() for name, (get, _) in _TF_FLAGS.items()}


def tf_apply(changes: Mapping[str, Any]) -> None:
    for name, value in present(changes).items():
        if name in _TF_FLAGS:
            _tf_attr(_TF_FLAGS[name][1])(value)


def rc_read() -> Any:
    rc = getattr(sys.modules.get("matplotlib"), "rcParams", None)
    if not isinstance(rc, dict):
        return {}
    # the stored values, without RcParams.__getitem__ (which resolves the backend); a
    # backend not chosen yet is a sentinel object, no setting (and unlike in any process)
    out = dict(dict.items(rc))
    if not isinstance(out.get("backend", ""), str):
        del out["backend"]
    return out


def rc_apply(changes: Mapping[str, Any]) -> None:
    loaded("matplotlib").rcParams.update(present(changes))


def rc_reset(value: Mapping[str, Any]) -> None:
    dict.update(loaded("matplotlib").rcParams, present(value))  # as it was, without re-validating
