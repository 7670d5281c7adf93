"""`--set KEY=VALUE` overrides of experiment settings, nanoGPT style.

    --set batch_size=64 --set transforms.spec_prob=0.3 --set model.base_size=32 --set optimizer.lr=1e-3

VALUE is read as a Python literal (numbers, tuples, strings, True/False/None),
or taken as a plain string when it is not one. A dotted key reaches into a
nested dict; for the `(name, kwargs)` pairs (model, loss, optimizer) it reaches
into the kwargs. Unknown keys are refused, so a typo never passes silently.
"""
import ast


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_override(experiment: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ValueError(f"--set expects KEY=VALUE, got {assignment!r}")
    key, text = assignment.split("=", 1)
    *path, last = key.strip().split(".")
    node = experiment
    for part in path:
        if part not in node:
            raise KeyError(f"--set {key}: unknown setting {part!r}; known: {', '.join(sorted(node))}")
        node = node[part]
        if isinstance(node, (tuple, list)) and len(node) == 2 and isinstance(node[1], dict):
            node = node[1]  # (name, kwargs) pair: override a kwarg
    if not path and last not in node:
        raise KeyError(f"--set {key}: unknown setting; known: {', '.join(sorted(node))}")
    node[last] = parse_value(text)


def apply_overrides(experiment: dict, assignments) -> dict:
    for assignment in assignments or []:
        apply_override(experiment, assignment)
    return experiment
