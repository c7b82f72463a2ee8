"""Open-Assistant exports (oasst1/oasst2): message trees (`*.trees.jsonl[.gz]`, one tree a
line, nested `replies`) and flat messages (`message_id` / `parent_id`, one message a line,
also the Hugging Face parquet layout), turned into threads.

Following the export notes and the official trainer: only trees in state
`ready_for_export`; only messages with `review_result == true` and not `deleted`; threads
through synthetic messages are left out unless options.keep_synthetic; a thread that ends
on a prompter message loses that turn. options.threads picks the best-ranked path (rank 0
first; a missing rank ranks after every given one, then the export's order) or every
root-to-leaf path ('all'). Keys whose value is null are omitted in the export: `.get()`.

Every message read gets one fate, counted when the caller passes a `messages` Counter:
`kept` (in at least one thread) or the reason it was removed — tree_not_ready,
parent_missing (a reply whose parent is not in the file, with its replies), deleted,
not_reviewed, synthetic, below_removed (a reply under a message removed for one of the
three reasons before), not_best (options.threads 'best': off the best-ranked path),
ends_on_prompter (a prompter turn trimmed off the end of every thread it is in) and
bad_record (a message or tree skipped by on_bad_record: skip). So messages read = the sum.
Trees and replies are walked without recursion: a chain of flat messages may be deep.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from lmforge.data.conversation import Conversation, Segment
from lmforge.data.records import NO_OPTIONS, Options, RecordDropped, require, shown
from lmforge.data.sources import BadRecord, Located
from lmforge.errors import LmforgeError

MESSAGE_FORMATS = frozenset({"oasst_trees", "oasst_messages"})
"""The formats whose loading counts messages (`DatasetReport.messages`)."""

_ROLES = {"prompter": "user", "assistant": "assistant"}
_FLAGS = ("review_result", "deleted", "synthetic")


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _message_problem(node: Any) -> str | None:
    """What makes `node` no Open-Assistant message (the fields lmforge reads), or None."""
    if not isinstance(node, dict):
        return f"a message must be an object, got {_kind(node)}"
    name = node.get("message_id")
    if not isinstance(name, str):
        return f"a message needs a string 'message_id', got {_kind(name)}"
    label = f"message {shown(name)}"
    if not isinstance(node.get("role"), str) or node["role"] not in _ROLES:
        return f"{label} has role {shown(node.get('role'))}; expected prompter or assistant"
    if not isinstance(node.get("text"), str):
        return f"{label}: field 'text' must be a string, got {_kind(node.get('text'))}"
    rank = node.get("rank")
    if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool)):
        return f"{label}: field 'rank' must be a whole number, got {shown(rank)}"
    for flag in _FLAGS:
        if node.get(flag) is not None and not isinstance(node[flag], bool):
            return f"{label}: field '{flag}' must be true or false, got {shown(node[flag])}"
    if node.get("parent_id") is not None and not isinstance(node["parent_id"], str):
        return f"{label}: field 'parent_id' must be a string, got {_kind(node['parent_id'])}"
    return None


def _rank_key(node: dict[str, Any], position: int) -> tuple[bool, int, int]:
    rank = node.get("rank")
    return rank is None, rank if rank is not None else 0, position


def _own_removal(node: dict[str, Any], keep_synthetic: bool) -> str | None:
    if node.get("deleted") is True:
        return "deleted"
    if node.get("review_result") is not True:
        return "not_reviewed"
    if node.get("synthetic") is True and not keep_synthetic:
        return "synthetic"
    return None


def _walk(prompt: dict[str, Any], where: str) -> tuple[list[dict[str, Any]], list[int], list[list[int]]]:
    """The tree's messages in depth-first pre-order (a parent before its replies), each
    message's parent index (-1 for the prompt) and reply indices; every message checked."""
    order: list[dict[str, Any]] = []
    parents: list[int] = []
    replies: list[list[int]] = []
    stack: list[tuple[Any, int]] = [(prompt, -1)]
    while stack:
        node, parent = stack.pop()
        problem = _message_problem(node)
        if problem is None and not isinstance(node.get("replies") or [], list):
            problem = (
                f"message {shown(node['message_id'])}: field 'replies' must be a list, got {_kind(node['replies'])}"
            )
        if problem:
            raise LmforgeError(f"{where}: {problem}")
        index = len(order)
        order.append(node)
        parents.append(parent)
        replies.append([])
        if parent >= 0:
            replies[parent].append(index)
        stack.extend((child, index) for child in reversed(node.get("replies") or []))
    return order, parents, replies


def _count_messages(prompt: Any) -> int:
    """Objects in a (possibly malformed) tree, for counting a skipped tree's messages."""
    count, stack = 0, [prompt]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count += 1
            if isinstance(node.get("replies"), list):
                stack.extend(node["replies"])
    return count


def _tree_threads(
    record: dict[str, Any], where: str, options: Options
) -> tuple[list[Conversation], Counter, str | None]:
    """(threads, each message's fate counted, the reason the whole tree gives nothing or None)."""
    require(record, ("prompt",), "oasst_trees", where)
    prompt = record["prompt"]
    if not isinstance(prompt, dict):
        raise LmforgeError(f"{where}: oasst_trees field 'prompt' must be a message object, got {_kind(prompt)}")
    state = record.get("tree_state", "ready_for_export")
    if not isinstance(state, str):
        raise LmforgeError(f"{where}: oasst_trees field 'tree_state' must be a string, got {_kind(state)}")
    order, parents, replies = _walk(prompt, where)
    if state != "ready_for_export":
        return [], Counter(tree_not_ready=len(order)), "tree_not_ready"
    if prompt.get("parent_id") is not None:  # a flat message whose parent the file lacks
        return [], Counter(parent_missing=len(order)), "parent_missing"

    # each message's fate, parents first: its own removal, else its parent's, else the rank
    keep_synthetic = bool(options.get("keep_synthetic", False))
    best_only = options.get("threads", "best") == "best"
    fates: list[str | None] = [None] * len(order)
    for index, node in enumerate(order):
        parent = parents[index]
        inherited = None
        if parent >= 0 and fates[parent] is not None:
            inherited = "not_best" if fates[parent] == "not_best" else "below_removed"
        fates[index] = _own_removal(node, keep_synthetic) or fates[index] or inherited
        candidates = [c for c in replies[index] if _own_removal(order[c], keep_synthetic) is None]
        if fates[index] is None and best_only and candidates:
            best = min(candidates, key=lambda c: _rank_key(order[c], c))
            for other in candidates:
                if other != best:
                    fates[other] = "not_best"

    # SFT needs a thread to end on an answer: a message with no assistant at or below it
    # among the kept ones ends every thread it is in on a prompter turn
    answered = [False] * len(order)
    for index in reversed(range(len(order))):
        if fates[index] is None:
            answered[index] = order[index]["role"] == "assistant" or any(answered[c] for c in replies[index])
            if not answered[index]:
                fates[index] = "ends_on_prompter"
    counts = Counter(fate or "kept" for fate in fates)
    if fates[0] is not None:
        return [], counts, "no_assistant_turn" if fates[0] == "ends_on_prompter" else "not_reviewed_or_deleted"

    metadata = {"message_tree_id": record.get("message_tree_id") or prompt["message_id"]}
    if isinstance(prompt.get("lang"), str):
        metadata["lang"] = prompt["lang"]
    threads = []
    for index in range(len(order)):  # pre-order: the threads in the export's order
        if fates[index] is None and not any(fates[c] is None for c in replies[index]):
            path = [index]
            while parents[path[-1]] >= 0:
                path.append(parents[path[-1]])
            segments = tuple(Segment(_ROLES[order[i]["role"]], order[i]["text"]) for i in reversed(path))
            threads.append(Conversation(segments, where, metadata))
    return threads, counts, None


def from_oasst_tree(
    record: dict[str, Any], where: str, options: Options = NO_OPTIONS, messages: Counter | None = None
) -> list[Conversation]:
    """One tree's threads; `messages`, when given, counts every message's fate."""
    try:
        threads, counts, dropped = _tree_threads(record, where, options)
    except LmforgeError:
        if messages is not None:  # read and skipped, if the dataset skips bad records
            messages["bad_record"] += _count_messages(record.get("prompt"))
        raise
    if messages is not None:
        messages.update(counts)
    if dropped:
        raise RecordDropped(dropped)
    return threads


def group_messages(
    located: Iterator[Located], on_bad: BadRecord | None = None, messages: Counter | None = None
) -> Iterator[Located]:
    """Flat messages -> tree records {message_tree_id, tree_state, prompt: nested node},
    located where each tree's prompt message was. Children keep the export's order after
    sorting by rank (unranked last), as in the trees file. A reply whose parent the file
    lacks heads a tree of its own, which `from_oasst_tree` counts as parent_missing. A bad
    message (`on_bad` given: skipped, and counted in `messages` as bad_record) is an error
    at its own line."""

    def bad(where: str, problem: str) -> None:
        if on_bad is None:
            raise LmforgeError(f"{where}: {problem}")
        if messages is not None:
            messages["bad_record"] += 1
        on_bad(where, problem)

    nodes: dict[str, dict[str, Any]] = {}
    lines: dict[str, str] = {}
    for record, where in located:
        problem = _message_problem(record)
        if problem is None and record["message_id"] in nodes:
            problem = f"duplicate message_id {shown(record['message_id'])} (first at {lines[record['message_id']]})"
        if problem:
            bad(where, problem)
            continue
        nodes[record["message_id"]] = {**record, "replies": []}
        lines[record["message_id"]] = where

    tops, children = [], {}
    for position, (name, node) in enumerate(nodes.items()):
        parent = node.get("parent_id")
        if parent is None or parent not in nodes:
            tops.append(name)
        else:
            children.setdefault(parent, []).append((position, node))
    for parent, kids in children.items():
        nodes[parent]["replies"] = [node for position, node in sorted(kids, key=lambda k: _rank_key(k[1], k[0]))]

    # what no prompt and no orphaned reply leads to hangs on a loop of parent_id references
    reached, stack = set(), [nodes[name] for name in tops]
    while stack:
        node = stack.pop()
        reached.add(node["message_id"])
        stack.extend(node["replies"])
    for name in [name for name in nodes if name not in reached]:
        bad(lines[name], f"message {shown(name)} is in a loop of parent_id references")

    for name in tops:
        root = nodes[name]
        tree = {
            "message_tree_id": root.get("message_tree_id") or name,
            "tree_state": root.get("tree_state", "ready_for_export"),
            "prompt": root,
        }
        yield tree, lines[name]
