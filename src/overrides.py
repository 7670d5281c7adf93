"""`--set KEY=VALUE` overrides of experiment settings, nanoGPT style.

    --set batch_size=64 --set transforms.spec_prob=0.3 --set model.base_size=32 --set optimizer.lr=1e-3

VALUE is read as a Python literal (numbers, tuples, strings, True/False/None),
or taken as a plain string when it is not one, and must suit the setting it
replaces: a switch takes True/False (or true/false), a whole number an int, a
number an int or float, a tuple or list a tuple or list. Without that check,
`--set channels_last=false` gave the text 'false', which Python reads as true.
A dotted key reaches into a nested dict; for the `(name, kwargs)` pairs (model,
loss, optimizer) it reaches into the kwargs. Every level of the key must
already exist in the experiment, so a typo (`plateau.patiance`,
`model.base_sise`) stops the run before anything is written, with the valid
keys at that level. To give a model, loss or optimizer an argument the
experiment does not list, set the whole pair
(`--set "optimizer=('AdamW', {'lr': 1e-3, 'weight_decay': 0.01})"`).
"""
import ast

from src.errors import BadSetting


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


TRUE_FALSE = {"true": True, "false": False}


def _suited(key: str, text: str, current, value):
    """`value` as the setting's current value's type asks, or BadSetting naming what it takes.

    Text settings (and those that are None) take any value; the others refuse the text a literal reading falls
    back to (`epoch_size=6400x`, `channels_last=flase`) and values of the wrong kind (`epochs=60.5`)."""
    if isinstance(current, bool):
        if isinstance(value, str) and value.lower() in TRUE_FALSE:
            return TRUE_FALSE[value.lower()]
        if not isinstance(value, bool):
            raise BadSetting(f"--set {key}={text}: {key} is True or False (it is {current} now)")
    elif isinstance(current, (int, float)):
        kinds, what = ((int,), "a whole number") if isinstance(current, int) else ((int, float), "a number")
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise BadSetting(f"--set {key}={text}: {key} is {what} (it is {current!r} now)")
    elif isinstance(current, (tuple, list)) and not isinstance(value, (tuple, list)):
        raise BadSetting(f"--set {key}={text}: {key} is a tuple or list (it is {current!r} now)")
    return value


def _is_pair(value) -> bool:
    """A `(name, kwargs)` setting such as model, loss or optimizer (a list once read back from JSON)."""
    return isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], str) \
        and isinstance(value[1], dict)


def apply_override(experiment: dict, assignment: str) -> None:
    """Set one `KEY=VALUE` in `experiment` (in place); BadSetting if any level of KEY is not a setting."""
    if "=" not in assignment:
        raise BadSetting(f"--set expects KEY=VALUE, got {assignment!r}")
    key, text = assignment.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    node = experiment
    for depth, part in enumerate(parts):
        where, pair = ".".join(parts[:depth]), _is_pair(node)
        if pair:
            node = node[1]  # model.base_size: a kwarg of the (name, kwargs) pair
        if not isinstance(node, dict):
            raise BadSetting(f"--set {key}: {where} is a value ({node!r}), it has no setting {part!r}")
        if part not in node:
            level = f"settings of {where}" if where else "top-level settings"
            hint = f"; to pass another argument, set the whole pair: --set {where}=(name, {{...}})" if pair else ""
            raise BadSetting(f"--set {key}: unknown setting {part!r}; valid {level}: "
                             f"{', '.join(sorted(node)) or '(none)'}{hint}")
        if depth == len(parts) - 1:
            node[part] = _suited(key, text, node[part], parse_value(text))
        else:
            node = node[part]


def apply_overrides(experiment: dict, assignments) -> dict:
    for assignment in assignments or []:
        apply_override(experiment, assignment)
    return experiment
