"""The public app's two callbacks as the browser calls them, and which request bodies Dash can take.

``PAGE`` and ``VIEW`` declare the callbacks (``app.py`` registers them from here).  Dash names a
callback by its outputs (``..id.prop...id.prop..`` when there are several): ``PAGE_OUTPUT`` and
``VIEW_OUTPUT`` are those names, what a client puts in a request's ``output`` (load generators and
tests send them; a test checks they are exactly the keys of the app's ``callback_map``).

Dash parses ``/_dash-update-component`` bodies trusting their shape: a list where it expects a dict,
an input missing or an output renamed gives a 500.  ``well_formed`` says whether a body has the shape
the renderer sends for one of these callbacks; ``repaired`` is the same request in that shape, with
whatever values could be found in it (none: the default view), so a malformed request gets a view
and never an error.  Nothing here reads or writes Dash's answers.
"""
from __future__ import annotations

from dataclasses import dataclass

FIGURES = ("public-map", "public-trend")
VIEW_OUTPUTS = ("public-cards", "public-asof", "public-error", "public-map", "public-map-table",
                "public-trend", "public-trend-table")


@dataclass(frozen=True)
class Callback:
    outputs: tuple[tuple[str, str], ...]  # (component id, property)
    inputs: tuple[tuple[str, str], ...]
    state: tuple[tuple[str, str], ...] = ()

    @property
    def output(self) -> str:
        """Dash's name of the callback (its ``callback_map`` key)."""
        if len(self.outputs) == 1:
            return "{}.{}".format(*self.outputs[0])
        return ".." + "...".join(f"{cid}.{prop}" for cid, prop in self.outputs) + ".."


PAGE = Callback(outputs=(("public-page", "children"), ("public-locale", "data")),
                inputs=(("public-url", "search"),))
VIEW = Callback(outputs=tuple((i, "figure" if i in FIGURES else "children") for i in VIEW_OUTPUTS),
                inputs=(("public-kpi", "value"), ("public-area", "value"), ("public-interval", "n_intervals")),
                state=(("public-locale", "data"),))
CALLBACKS = {cb.output: cb for cb in (PAGE, VIEW)}
PAGE_OUTPUT = PAGE.output
VIEW_OUTPUT = VIEW.output


def _matches(items, declared) -> bool:
    return isinstance(items, list) and len(items) == len(declared) and all(
        isinstance(item, dict) and item.get("id") == cid and item.get("property") == prop
        for item, (cid, prop) in zip(items, declared))


def well_formed(body: object) -> bool:
    """Whether ``body`` asks for one of the public callbacks in the shape the Dash renderer sends."""
    if not isinstance(body, dict) or not isinstance(body.get("output"), str):
        return False
    cb = CALLBACKS.get(body["output"])
    changed = body.get("changedPropIds", [])
    return (cb is not None and _matches(body.get("outputs"), cb.outputs)
            and _matches(body.get("inputs"), cb.inputs) and _matches(body.get("state", []), cb.state)
            and isinstance(changed, list) and all(isinstance(c, str) for c in changed))


def values(body: dict) -> dict[str, object]:
    """``{component id: value}`` of the inputs and state of a body of any shape (string ids only)."""
    found: dict[str, object] = {}
    for field in ("inputs", "state"):
        items = body.get(field)
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"] not in found:
                found[item["id"]] = item.get("value")
    return found


def repaired(body: dict, output: str) -> dict:
    """The request for callback ``output`` in the renderer's shape, with the values ``body`` holds."""
    cb = CALLBACKS[output]
    found = values(body)
    return {"output": output,
            "outputs": [{"id": cid, "property": prop} for cid, prop in cb.outputs],
            "inputs": [{"id": cid, "property": prop, "value": found.get(cid)} for cid, prop in cb.inputs],
            "state": [{"id": cid, "property": prop, "value": found.get(cid)} for cid, prop in cb.state],
            "changedPropIds": []}
