"""Named ensembles: which experiments a final prediction blends, and how, as plain data.

`blend.py --ensemble NAME` blends the members' test predictions on disk;
`tag.py --ensemble NAME` and `export.py --ensemble NAME` build the same blend in
memory from the members' fold models (`src.predict.ensemble`). Keys:

  members         experiments blended, in order: first-level ones (src/experiments.py) and stacking
                  ones (src/stacking/experiments.py); a stacking member brings its own inputs
                  (the first-level experiments listed in its config.json), which are predicted too
  weights         one non-negative weight per member for the geometric mean, or None (all equal)
  test_tile_step  sliding-window step in frames of every first-level member's test tiles, or None
                  for each experiment's own `test_tile_step`

`ensemble_2019` is the original's final submission: the
geometric mean, equal weights, of the seven first-level experiments and the
three stacking MLPs, each already the geometric mean of its five fold models,
with test tiles every 128 frames. `demo` is the same shape at demo size.
"""
import copy

from src.stacking.experiments import FIRST_LEVEL

ENSEMBLES = {
    "ensemble_2019": {
        "members": [*FIRST_LEVEL, "stacking_008_fcnet_43040", "stacking_008_fcnet_45041",
                    "stacking_008_fcnet_50013"],
        "weights": None,
        "test_tile_step": 128,
    },
    # The demo experiments predict their test clips every 32 frames (src/experiments.py DEMO).
    "demo": {
        "members": ["demo", "demo_skip", "stacking_demo"],
        "weights": None,
        "test_tile_step": 32,
    },
}


def get_ensemble(name: str) -> dict:
    """A deep copy of the named ensemble (safe to modify)."""
    if name not in ENSEMBLES:
        raise KeyError(f"Unknown ensemble {name!r}; known: {', '.join(sorted(ENSEMBLES))}")
    return copy.deepcopy(ENSEMBLES[name])


def check_ensemble(spec: dict, name: str = "ensemble") -> dict:
    """`spec` after checking its keys and values; raises ValueError naming the problem."""
    missing = {"members", "weights", "test_tile_step"} - set(spec)
    if missing:
        raise ValueError(f"{name}: missing key(s) {sorted(missing)}")
    members, weights, step = spec["members"], spec["weights"], spec["test_tile_step"]
    if not members or len(set(members)) != len(members):
        raise ValueError(f"{name}: members must be distinct experiment names, got {members}")
    if weights is not None and (len(weights) != len(members) or any(w < 0 for w in weights) or sum(weights) <= 0):
        raise ValueError(f"{name}: weights must be {len(members)} non-negative numbers with a positive sum, "
                         f"got {weights}")
    if step is not None and int(step) < 1:
        raise ValueError(f"{name}: test_tile_step must be >= 1 frame or None, got {step}")
    return spec
