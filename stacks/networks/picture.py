"""The network page's picture: hosts, environments, stacks and subnets.

:func:`host_picture` reads one Docker host, runs the conflict check of the
environments shown on it and lays the result out as plain shapes (boxes,
texts, lines) that the template writes as SVG: one column per environment
with a row per planned network (green: on the host as planned, grey: not
created yet, red: in conflict, amber: a warning), one column for what
else holds addresses on the host, and a red line from each conflicting
network to what is in its way. Nothing needs JavaScript; every shape has a
``<title>`` with the full text.
"""

from dataclasses import dataclass, field

from .. import engine
from .conflicts import Planned, block, find_conflicts
from .hostfacts import occupants, read_host
from .plan import planned_on_host

__all__ = ["HostPicture", "host_picture", "layout", "shown_message"]

COLUMN = 360
HOST_COLUMN = 430
PER_ROW = 3
GAP = 60
ROW = 22
HEAD = 30
PAD = 12


@dataclass
class HostPicture:
    """One Docker host as the network page shows it."""

    docker_host: str
    environments: list
    #: Names of the environments the viewer may see.
    visible: set = field(default_factory=set)
    error: str = ""
    report: object = None
    facts: object = None
    planned: list = field(default_factory=list)
    width: int = 0
    height: int = 0
    shapes: list = field(default_factory=list)

    @property
    def conflicts(self):
        return self.report.conflicts if self.report else []

    @property
    def warnings(self):
        return self.report.warnings if self.report else []

    @property
    def problems(self):
        return [p.message for p in self.report.problems] if self.report else []

    @property
    def unread(self):
        return list(self.facts.errors) if self.facts else []

    @property
    def blocking(self):
        """Return the number of conflicts and plan problems."""
        return len(self.conflicts) + len(self.problems)

    @property
    def messages(self):
        """Return ``(severity, text)`` of each conflict and warning, naming
        no environment the viewer may not see."""
        return [
            (c.severity, shown_message(c, self.visible))
            for c in (*self.conflicts, *self.warnings)
        ]


def block_key(subnet):
    """Return a sort key of a subnet (unreadable ones last)."""
    try:
        return block(subnet)[:2]
    except ValueError:
        return (1 << 200, 0)


def shown_message(conflict, visible):
    """Return the conflict's message, naming no environment outside
    ``visible`` (the names the viewer may see)."""
    other = conflict.other
    hidden = ""
    if isinstance(other, Planned) and other.environment not in visible:
        hidden = f"a planned network of another environment ({other.subnet})"
    elif getattr(other, "detail", "").startswith("environment "):
        environment = other.detail.split(",")[0].split()[-1]
        if environment not in visible:
            hidden = f"a portal network of another environment ({other.subnet})"
    text = conflict.message()
    if hidden:
        text = text.replace(other.describe(), hidden)
    return text


def _row_state(planned, conflicts, warnings, in_place):
    if planned.docker_name in conflicts:
        return "conflict"
    if planned.docker_name in warnings:
        return "warning"
    return "placed" if in_place else "planned"


def _box(shapes, x, y, w, rows, title, cls, heading):
    shapes.append(
        {
            "kind": "box",
            "x": x,
            "y": y,
            "w": w,
            "h": HEAD + ROW * max(rows, 1) + 6,
            "cls": cls,
            "title": title,
        }
    )
    shapes.append(
        {"kind": "text", "x": x + 8, "y": y + 20, "text": heading, "cls": "head"}
    )


def _row(shapes, x, y, w, text, cls, title, limit):
    shapes.append(
        {
            "kind": "box",
            "x": x + 6,
            "y": y,
            "w": w - 12,
            "h": ROW - 4,
            "cls": cls,
            "title": title,
        }
    )
    shapes.append(
        {
            "kind": "text",
            "x": x + 12,
            "y": y + 13,
            "text": text[:limit] + ("…" if len(text) > limit else ""),
            "cls": "label",
        }
    )


def layout(picture, visible):
    """Fill ``picture.shapes`` from its report and facts.

    The host's column is on the left, the environments' boxes to its
    right, ``PER_ROW`` to a row. ``visible`` is the set of environment names
    the viewer may see; a portal network of another environment is shown
    without its name.
    """
    report, facts = picture.report, picture.facts
    conflicts = {c.planned.docker_name for c in report.conflicts}
    warnings = {c.planned.docker_name for c in report.warnings}
    present = {(n.name, s) for n in facts.networks for s in n.subnets}
    shapes, anchors = [], {}

    # What else is on the host: every occupant that is not a planned
    # network in place.
    represented = {(p.docker_name, p.subnet) for p in picture.planned}
    order = {"network": 0, "interface": 1, "route": 2, "pool": 3}
    others = sorted(
        (
            o
            for o in occupants(facts)
            if not (o.owner and (o.owner, o.subnet) in represented)
        ),
        key=lambda o: (order.get(o.kind, 9), block_key(o.subnet), o.name),
    )
    in_the_way = {
        (c.other.kind, c.other.name, c.other.subnet)
        for c in (*report.conflicts, *report.warnings)
        if not isinstance(c.other, Planned)
    }
    _box(
        shapes,
        PAD,
        PAD,
        HOST_COLUMN,
        len(others),
        f"Docker host {picture.docker_host}",
        "host",
        "also on the host",
    )
    for row, occupant in enumerate(others):
        y = PAD + HEAD + row * ROW
        label = occupant.detail if occupant.kind == "pool" else occupant.name
        if occupant.kind == "network" and occupant.detail.startswith("environment "):
            environment = occupant.detail.split(",")[0].split()[-1]
            if environment not in visible:
                label = "a portal network of another environment"
        key = (occupant.kind, occupant.name, occupant.subnet)
        state = "other"
        if key in in_the_way:
            state = "warning" if occupant.kind == "pool" else "conflict"
        title = occupant.describe()
        if label.startswith("a portal network"):
            title = f"{label} ({occupant.subnet})"
        _row(
            shapes,
            PAD,
            y,
            HOST_COLUMN,
            f"{occupant.kind:<9} {occupant.subnet:<18} {label}",
            f"net {occupant.kind} {state}",
            title,
            54,
        )
        anchors[("occupant", key)] = (PAD + HOST_COLUMN - 6, y + 9)
    height = HEAD + ROW * max(len(others), 1) + 6

    left = PAD + HOST_COLUMN + GAP
    top, row_height = PAD, 0
    for index, environment in enumerate(picture.environments):
        if index and index % PER_ROW == 0:
            top += row_height + GAP // 2
            row_height = 0
        x = left + (index % PER_ROW) * (COLUMN + GAP // 2)
        rows = [p for p in picture.planned if p.environment == environment]
        _box(
            shapes,
            x,
            top,
            COLUMN,
            len(rows),
            f"environment {environment}",
            "env",
            f"environment {environment}",
        )
        for row, planned in enumerate(rows):
            y = top + HEAD + row * ROW
            state = _row_state(
                planned,
                conflicts,
                warnings,
                (planned.docker_name, planned.subnet) in present,
            )
            _row(
                shapes,
                x,
                y,
                COLUMN,
                f"{planned.stack:<10} {planned.subnet:<18} {planned.network}",
                f"net {state}",
                f"{planned.describe()}: {state}",
                46,
            )
            anchors[("planned", planned.docker_name)] = (x + 6, y + 9)
        row_height = max(row_height, HEAD + ROW * max(len(rows), 1) + 6)
        height = max(height, top - PAD + row_height)

    for conflict in (*report.conflicts, *report.warnings):
        start = anchors.get(("planned", conflict.planned.docker_name))
        other = conflict.other
        if isinstance(other, Planned):
            end = anchors.get(("planned", other.docker_name))
        else:
            end = anchors.get(("occupant", (other.kind, other.name, other.subnet)))
        if not start or not end or start == end:
            continue
        (x1, y1), (x2, y2) = start, end
        bend = max(30, abs(x1 - x2) // 3)
        shapes.append(
            {
                "kind": "line",
                "d": f"M{x1},{y1} C{x1 - bend},{y1} {x2 + bend},{y2} {x2},{y2}",
                "cls": conflict.severity,
                "title": conflict.message(),
            }
        )
    columns = min(len(picture.environments), PER_ROW)
    picture.shapes = shapes
    picture.width = left + columns * (COLUMN + GAP // 2) + PAD
    picture.height = PAD * 2 + height
    return picture


def host_picture(docker_host, environments, *, visible, owner="network.page"):
    """Return the :class:`HostPicture` of ``docker_host``.

    ``environments`` are the environments on that host the viewer may see
    (at least one); the check covers every environment on the host, so a
    conflict with an unseen one still shows, without its name.
    """
    picture = HostPicture(
        docker_host=docker_host,
        environments=[e.name for e in environments],
        visible=set(visible),
    )
    try:
        client = engine.client_for(environments[0])
        planned, problems = planned_on_host(docker_host)
        facts = read_host(client, environments[0], owner=owner)
    except engine.EngineError as exc:
        picture.error = str(exc)
        return picture
    names = set(picture.environments)
    picture.planned = planned
    picture.facts = facts
    picture.report = find_conflicts(
        planned,
        occupants(facts),
        focus=lambda p: p.environment in names,
        problems=[p for p in problems if p.environment in names],
    )
    return layout(picture, visible)
