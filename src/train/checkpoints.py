"""The one way checkpoints are loaded: `torch.load(weights_only=True)`, then the argus model.

A checkpoint is an argus checkpoint (`model.save`): a dict of the model class
name, its params (plain dicts, lists, strings, numbers) and the network's
state dict. Everything here is loadable by torch's weights-only unpickler,
which builds tensors and containers but never runs pickled code. argus's own
`load_model` calls plain `torch.load(path)`, whose default torch lets an
environment variable (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1) switch back to full
pickle; an explicit `weights_only=True` is not overridden by it, so a crafted
`model-*.pth` fails here with the file's name instead of running code.
"""
import argus

import src.train.argus_model  # noqa: F401  (registers FreesoundModel with argus)
from src.errors import BadCheckpoint, UserError
from src.files import safe_torch_load

REQUIRED_KEYS = ("model_name", "params", "nn_state_dict")


def read_checkpoint(path) -> dict:
    """The checkpoint dict at `path`, on CPU, read with `torch.load(weights_only=True)`."""
    state = safe_torch_load(path)
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise BadCheckpoint(f"{path}: not an argus checkpoint (expected keys {list(REQUIRED_KEYS)}, got {keys})")
    return state


def load_checkpoint(path, device="cpu", **params) -> argus.Model:
    """The argus model of a checkpoint, in eval mode on `device`; `params` replace stored ones (e.g. loss=None).

    argus builds the model from the stored params exactly as `argus.load_model`
    does; only the reading of the file is ours (`read_checkpoint`).
    """
    try:
        return argus.load_model(path, device=device, state_load_func=read_checkpoint, **params)
    except UserError:
        raise
    except ImportError as exc:  # argus: the model class named in the file is not registered
        raise BadCheckpoint(f"{path}: {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        # A file torch can read whose content is not a model argus can build: params of the wrong
        # shape or type, a state dict that does not fit the network (damaged or hand-edited).
        raise BadCheckpoint(f"{path}: the checkpoint's model cannot be rebuilt from it "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from exc
