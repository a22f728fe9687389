"""Online log template mining with Drain, snapshotted to plain JSON.

Drain routes a log message down a fixed-depth prefix tree (first by its number of
tokens, then by its first few tokens) to a short list of templates, picks the most
similar one and, if the similarity reaches ``sim_th``, merges the message into it
(tokens that differ become ``<*>``); otherwise it starts a new template. Variable parts
that a regex can recognise (addresses, numbers, ids, paths, user names) are masked
first, which is what makes a fixed depth work.

The algorithm is drain3's; what this module adds is a safe state format. drain3's own
persistence serialises its objects with ``jsonpickle``, which can construct arbitrary
objects (so run code) on load. Here the state is plain JSON (the clusters, with id,
template tokens and size, and the prefix tree as nested dicts of tokens to cluster
ids), and restoring rebuilds drain3's tree from it exactly, so a restored miner routes
every line as the original would.

Template ids are drain3's cluster ids (``"t17"``), kept in the snapshot: a cluster keeps
its id when its template generalises, and a restarted miner keeps assigning the same ids.

Reference: P. He, J. Zhu, Z. Zheng, M. R. Lyu, "Drain: An Online Log Parsing Approach
with Fixed Depth Tree", ICWS 2017.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

from drain3.drain import Drain, LogCluster, Node
from drain3.masking import MaskingInstruction
from drain3.template_miner import TemplateMiner as _Drain3Miner
from drain3.template_miner_config import TemplateMinerConfig

from detectors.base import Snapshot, SnapshotError

#: Masks applied in order, as ``(regex, name)``; a match becomes ``<name>``. Order matters:
#: compound tokens (paths, addresses with ports, ids) go before bare numbers. User names
#: are recognised only by the phrases that introduce them (``user alice``, ``for alice
#: from``, ``user=alice``), since a bare word cannot be told from a keyword.
DEFAULT_MASKS: tuple[tuple[str, str], ...] = (
    # user names after the words that introduce them in sshd / PAM / sudo lines
    (
        r"(?<=\buser )(?!unknown\b)[\w.@-]+|(?<=\buser=)[\w.@-]+|(?<=\bruser=)[\w.@-]+"
        r"|(?<=\bfor )(?!invalid\b)[\w.@-]+(?= from\b)",
        "USER",
    ),
    # URLs and absolute paths (at least two components, so "/" alone stays)
    (r"\b[a-z][a-z0-9+.-]*://\S+", "URL"),
    (r"(?<![\w/])(?:/[\w.@+~-]+){2,}/?", "PATH"),
    # IPv4 with optional port, IPv6, MAC
    (r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])", "IP"),
    (r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}(?![\w:])", "IP"),
    # block ids; hex numbers and long hex strings are numbers too (one mask name, so a
    # field that prints in decimal on one line and in hex on the next stays one template)
    (r"\bblk_-?\d+\b", "ID"),
    (r"\b0x[0-9a-fA-F]+\b", "NUM"),
    (r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b", "NUM"),
    # host names like ns.example.com (two dots or more, letters in the last label)
    (r"\b(?:[a-zA-Z0-9-]+\.){2,}[a-zA-Z]{2,}\b", "HOST"),
    # numbers, signed or decimal, alone or glued to a unit/letter suffix (e.g. 42ms)
    (r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w.])", "NUM"),
)


#: Dot leaders (``depth......0x0``, tables printed for humans) split like spaces.
_DOT_LEADER = re.compile(r"\.{3,}")


class MinedTemplate(NamedTuple):
    """What :meth:`TemplateMiner.add` says about one line."""

    template_id: str
    template: str
    is_new: bool


class TemplateMiner:
    """Drain template miner with masking and a JSON-safe snapshot.

    Parameters
    ----------
    sim_th
        Similarity (share of equal tokens) needed to join a template.
    depth
        Depth of the prefix tree (drain3 counts the root and the length layer, so
        ``depth - 2`` leading tokens route a message).
    max_children
        Children per tree node before further tokens share a ``<*>`` child.
    masks
        ``(regex, name)`` pairs, applied in order before mining.
    extra_delimiters
        Characters split like spaces (e.g. ``"="`` or ``","``).

    Notes
    -----
    Cost per line: masking (one regex pass per mask) plus a walk of ``depth`` tree
    nodes and a comparison with the templates in the leaf (a few, by design). State:
    one template per cluster plus the tree, typically a few hundred clusters. Use it to
    turn raw lines into template ids for the rare-template and sequence detectors. Do
    not use it for free text (chat, stack traces with varying length): templates
    fragment; parse those formats first.

    Examples
    --------
    >>> miner = TemplateMiner()
    >>> miner.add("Accepted password for alice from 192.0.2.10 port 50022 ssh2")
    MinedTemplate(template_id='t1', template='Accepted password for <USER> from <IP> port <NUM> ssh2', is_new=True)
    >>> miner.add("Accepted password for bob from 192.0.2.77 port 41000 ssh2").template_id
    't1'
    >>> twin = TemplateMiner.restore(miner.snapshot())
    >>> twin.add("Accepted password for carol from 198.51.100.3 port 2222 ssh2")
    MinedTemplate(template_id='t1', template='Accepted password for <USER> from <IP> port <NUM> ssh2', is_new=False)
    """

    name: ClassVar[str] = "drain_templates"
    version: ClassVar[int] = 1

    def __init__(
        self,
        sim_th: float = 0.5,
        depth: int = 5,
        max_children: int = 100,
        masks: Sequence[Sequence[str]] | None = None,
        extra_delimiters: Sequence[str] = (),
    ) -> None:
        if not 0.0 < sim_th <= 1.0:
            raise ValueError("sim_th must be in (0, 1]")
        if depth < 3:
            raise ValueError("depth must be at least 3")
        self.sim_th = float(sim_th)
        self.depth = int(depth)
        self.max_children = int(max_children)
        self.masks = [(str(p), str(n)) for p, n in (masks if masks is not None else DEFAULT_MASKS)]
        for pattern, _ in self.masks:
            re.compile(pattern)  # fail at construction, not on the first line
        self.extra_delimiters = [str(d) for d in extra_delimiters]
        config = TemplateMinerConfig()
        config.drain_sim_th = self.sim_th
        config.drain_depth = self.depth
        config.drain_max_children = self.max_children
        config.drain_extra_delimiters = list(self.extra_delimiters)
        config.masking_instructions = [MaskingInstruction(p, n) for p, n in self.masks]
        config.parametrize_numeric_tokens = True
        self._miner = _Drain3Miner(persistence_handler=None, config=config)  # no jsonpickle

    @property
    def _drain(self) -> Drain:
        return self._miner.drain

    def mask(self, line: str) -> str:
        """``line`` with its variable parts replaced by ``<NAME>`` masks."""
        return str(self._miner.masker.mask(_DOT_LEADER.sub(" ", line.strip())))

    def add(self, line: str) -> MinedTemplate:
        """Mine one line: its template id, its (possibly just generalised) template, and
        whether the template is new."""
        result = self._miner.add_log_message(_DOT_LEADER.sub(" ", line.strip()))
        return MinedTemplate(
            f"t{result['cluster_id']}",
            str(result["template_mined"]),
            result["change_type"] == "cluster_created",
        )

    def match(self, line: str) -> str | None:
        """The id of the template ``line`` belongs to, without learning (``None`` if none)."""
        cluster = self._miner.match(
            _DOT_LEADER.sub(" ", line.strip()), full_search_strategy="fallback"
        )
        return None if cluster is None else f"t{cluster.cluster_id}"

    def templates(self) -> dict[str, str]:
        """Every template by id."""
        return {f"t{c.cluster_id}": c.get_template() for c in self._drain.clusters}

    def params(self) -> dict[str, Any]:
        return {
            "sim_th": self.sim_th,
            "depth": self.depth,
            "max_children": self.max_children,
            "masks": [list(m) for m in self.masks],
            "extra_delimiters": list(self.extra_delimiters),
        }

    # -- state ---------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Parameters, clusters and the prefix tree, as plain JSON-safe values."""
        clusters = [
            {"id": c.cluster_id, "tokens": list(c.log_template_tokens), "size": c.size}
            for c in self._drain.clusters
        ]
        return {
            "type": self.name,
            "version": self.version,
            "params": self.params(),
            "state": {
                "clusters": clusters,
                "counter": self._drain.clusters_counter,
                "tree": _tree_to_json(self._drain.root_node),
            },
        }

    @classmethod
    def restore(cls, snapshot: Snapshot) -> TemplateMiner:
        """Rebuild a miner from :meth:`snapshot`; raises :class:`SnapshotError`."""
        if not isinstance(snapshot, dict) or snapshot.get("type") != cls.name:
            raise SnapshotError(f"not a {cls.name!r} snapshot")
        if snapshot.get("version") != cls.version:
            raise SnapshotError(f"unsupported {cls.name!r} snapshot version")
        try:
            miner = cls(**snapshot["params"])
            state = snapshot["state"]
            drain = miner._drain
            for c in state["clusters"]:
                cluster = LogCluster([str(t) for t in c["tokens"]], int(c["id"]))
                cluster.size = int(c["size"])
                drain.id_to_cluster[cluster.cluster_id] = cluster
            drain.root_node = _tree_from_json(state["tree"])
            drain.clusters_counter = int(state["counter"])
        except (KeyError, TypeError, ValueError, re.error) as exc:
            raise SnapshotError(f"corrupt {cls.name!r} snapshot: {exc}") from exc
        known = set(drain.id_to_cluster)
        if any(cid not in known for cid in _tree_cluster_ids(snapshot["state"]["tree"])):
            raise SnapshotError("the tree refers to clusters the snapshot does not hold")
        return miner


def _tree_to_json(node: Node) -> dict[str, Any]:
    # The tree is at most ``depth`` levels deep, so recursion is bounded.
    return {
        "ids": list(node.cluster_ids),
        "children": {tok: _tree_to_json(child) for tok, child in node.key_to_child_node.items()},
    }


def _tree_from_json(obj: dict[str, Any], levels: int = 64) -> Node:
    # ``levels`` bounds the recursion, so a hostile snapshot cannot exhaust the stack.
    if levels <= 0:
        raise ValueError("prefix tree is deeper than any drain depth")
    node = Node()
    node.cluster_ids = [int(i) for i in obj["ids"]]
    node.key_to_child_node = {
        str(k): _tree_from_json(v, levels - 1) for k, v in obj["children"].items()
    }
    return node


def _tree_cluster_ids(obj: dict[str, Any]) -> list[int]:
    out = [int(i) for i in obj["ids"]]
    for child in obj["children"].values():
        out.extend(_tree_cluster_ids(child))
    return out
