"""Open-Assistant exports (oasst1/oasst2): message trees (`*.trees.jsonl[.gz]`, one tree a
line, nested `replies`) and flat messages (`message_id` / `parent_id`, one message a line,
also the Hugging Face parquet layout), turned into threads.

Following the export notes and the official trainer: only trees in state
`ready_for_export`; only messages with `review_result == true` and not `deleted`; threads
through synthetic messages are left out unless options.keep_synthetic; a thread that ends
on a prompter message loses that turn. options.threads picks the best-ranked path (rank 0
first; a missing rank ranks after every given one, then the export's order) or every
root-to-leaf path ('all'). Keys whose value is null are omitted in the export: `.get()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lmforge.data.conversation import Conversation, Segment
from lmforge.data.records import NO_OPTIONS, Options, RecordDropped, require, text_field
from lmforge.data.sources import Located
from lmforge.errors import LmforgeError

_ROLES = {"prompter": "user", "assistant": "assistant"}


def _kept(node: Any, keep_synthetic: bool) -> bool:
    return (
        isinstance(node, dict)
        and node.get("review_result") is True
        and not node.get("deleted", False)
        and (keep_synthetic or not node.get("synthetic", False))
    )


def _rank_key(indexed: tuple[int, dict[str, Any]]) -> tuple[bool, int, int]:
    index, node = indexed
    rank = node.get("rank")
    return rank is None, rank if rank is not None else 0, index


def _threads(node: dict[str, Any], best_only: bool, keep_synthetic: bool) -> list[list[dict[str, Any]]]:
    children = [c for c in node.get("replies") or [] if _kept(c, keep_synthetic)]
    if not children:
        return [[node]]
    if best_only:
        children = [min(enumerate(children), key=_rank_key)[1]]
    return [[node, *rest] for child in children for rest in _threads(child, best_only, keep_synthetic)]


def _conversation(thread: list[dict[str, Any]], where: str, metadata: dict[str, Any]) -> Conversation | None:
    segments = []
    for depth, node in enumerate(thread):
        role = _ROLES.get(node.get("role"))
        if role is None:
            raise LmforgeError(
                f"{where}: message {node.get('message_id', depth)} has role {node.get('role')!r}; "
                "expected prompter or assistant"
            )
        segments.append(Segment(role, text_field(node.get("text"), "text", where)))
    while segments and segments[-1].role != "assistant":
        segments.pop()  # SFT needs the thread to end on an answer
    return Conversation(tuple(segments), where, metadata) if segments else None


def from_oasst_tree(record: dict[str, Any], where: str, options: Options = NO_OPTIONS) -> list[Conversation]:
    require(record, ("prompt",), "oasst_trees", where)
    if record.get("tree_state", "ready_for_export") != "ready_for_export":
        raise RecordDropped("tree_not_ready")
    prompt = record["prompt"]
    if not isinstance(prompt, dict):
        raise LmforgeError(f"{where}: oasst_trees field 'prompt' must be a message object, got {type(prompt).__name__}")
    keep_synthetic = bool(options.get("keep_synthetic", False))
    if not _kept(prompt, keep_synthetic):
        raise RecordDropped("not_reviewed_or_deleted")
    metadata = {"message_tree_id": record.get("message_tree_id") or prompt.get("message_id")}
    if isinstance(prompt.get("lang"), str):
        metadata["lang"] = prompt["lang"]
    best_only = options.get("threads", "best") == "best"
    conversations = [c for t in _threads(prompt, best_only, keep_synthetic) if (c := _conversation(t, where, metadata))]
    if not conversations:
        raise RecordDropped("no_assistant_turn")
    return conversations


def group_messages(located: Iterator[Located]) -> Iterator[Located]:
    """Flat messages -> tree records {message_tree_id, tree_state, prompt: nested node},
    located where each tree's prompt message was. Children keep the export's order after
    sorting by rank (unranked last), as in the trees file."""
    nodes: dict[str, dict[str, Any]] = {}
    roots: list[tuple[dict[str, Any], str]] = []
    children: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for index, (record, where) in enumerate(located):
        require(record, ("message_id", "role", "text"), "oasst_messages", where)
        node = {**record, "replies": []}
        nodes[record["message_id"]] = node
        parent = record.get("parent_id")
        if parent is None:
            roots.append((node, where))
        else:
            children.setdefault(parent, []).append((index, node))
    for parent, kids in children.items():
        if parent in nodes:  # a reply whose parent the export left out has no thread
            nodes[parent]["replies"] = [node for _, node in sorted(kids, key=_rank_key)]
    for root, where in roots:
        yield (
            {
                "message_tree_id": root.get("message_tree_id") or root["message_id"],
                "tree_state": root.get("tree_state", "ready_for_export"),
                "prompt": root,
            },
            where,
        )
