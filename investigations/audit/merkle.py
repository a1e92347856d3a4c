"""A Merkle tree over the audit chain (RFC 9162, as Certificate Transparency): tree heads and inclusion proofs.

Leaf i is the hash of record #i+1. A signed digest carries the tree head of the chain up to its
seq, so a record can be proven a member with log2(n) hashes instead of every record before it.
Written here rather than taken from a library: the leaves already live in the database, and one
pass over them gives the head and the proofs of the records wanted, holding only those proofs;
the Python libraries keep a whole tree (or a store) of their own.
"""

import hashlib
from collections.abc import Iterable


def leaf_hash(record_hash: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(record_hash)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def tree(record_hashes: Iterable[str], size: int, wanted: Iterable[int] = ()) -> tuple[str, dict[int, list[str]]]:
    """One pass over the hashes of records #1…#size: (tree head, {seq: inclusion proof}) for the seqs wanted.

    Subtrees are completed left to right on a stack (level, hash); a completed subtree that is the
    sibling of a wanted leaf's path is kept. The right edge's subtrees are partial; each is the
    fold of the stack below its level.
    """
    levels = max(size - 1, 0).bit_length()
    wanted = [seq - 1 for seq in wanted]
    needed = {(level, (leaf >> level) ^ 1) for leaf in wanted for level in range(levels)}
    kept, stack, count = {}, [], 0
    for record_hash in record_hashes:
        level, index, value = 0, count, leaf_hash(record_hash)
        while True:
            if (level, index) in needed:
                kept[level, index] = value
            if not stack or stack[-1][0] != level:
                break
            value, level, index = node_hash(stack.pop()[1], value), level + 1, index >> 1
        stack.append((level, value))
        count += 1
    if count != size:
        raise ValueError(f"the chain holds {count} records, not {size}")

    def fold(below_level: int) -> bytes:
        """The partial subtree at the right edge made of the stack's subtrees below `below_level`."""
        parts = [value for level, value in stack if level < below_level]
        value = parts.pop()
        while parts:
            value = node_hash(parts.pop(), value)
        return value

    def proof(leaf: int) -> list[str]:
        path = []
        for level in range(levels):
            sibling = (leaf >> level) ^ 1
            if sibling << level >= size:
                continue  # no sibling here: the node is carried up as it is
            full = (sibling + 1) << level <= size
            path.append((kept[level, sibling] if full else fold(level)).hex())
        return path

    root = fold(levels + 1) if size else hashlib.sha256(b"").digest()
    return root.hex(), {leaf + 1: proof(leaf) for leaf in wanted}


def proves(record_hash: str, seq: int, size: int, path: list[str], root: str) -> bool:
    """Whether `path` proves record #seq a member of the tree of `size` records with head `root` (RFC 9162 2.1.3.2)."""
    if not 1 <= seq <= size:
        return False
    index, last, value = seq - 1, size - 1, leaf_hash(record_hash)
    try:
        for sibling in map(bytes.fromhex, path):
            if last == 0:
                return False
            if index & 1 or index == last:
                value = node_hash(sibling, value)
                while not index & 1 and index:
                    index, last = index >> 1, last >> 1
            else:
                value = node_hash(value, sibling)
            index, last = index >> 1, last >> 1
    except ValueError:
        return False
    return last == 0 and value.hex() == root
