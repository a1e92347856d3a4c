"""A Merkle tree over the audit chain (RFC 9162, as Certificate Transparency): tree heads and inclusion proofs.

Leaf i is the hash of record #i+1. A signed digest carries the tree head of the chain up to its
seq, so a record can be proven a member with log2(n) hashes instead of every record before it.
Written here rather than taken from a library: the leaves already live in the database, and one
pass over them gives the head, keeping (when proofs are wanted) only the complete subtrees' hashes
in flat byte arrays; the Python libraries keep a whole tree of objects (or a store) of their own.
"""

import hashlib
from collections.abc import Iterable


def leaf_hash(record_hash: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(record_hash)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class Tree:
    """The tree over the hashes of records #1…#size, in one pass: its head (`root`) and, when `keep`, every
    complete subtree's hash (32 bytes each, about 64 bytes a record), from which any record's inclusion
    proof is read as it is needed: an export of a million records holds 64 MB, not a proof per record.

    Subtrees are completed left to right on a stack (level, hash), so those of a level are kept in index
    order. The right edge's subtrees are partial; each is the fold of the stack below its level.
    """

    def __init__(self, record_hashes: Iterable[str], size: int, *, keep: bool = False):
        self.size = size
        self.levels = max(size - 1, 0).bit_length()
        self._complete = [bytearray() for _ in range(self.levels + 1)] if keep else None
        stack: list[tuple[int, bytes]] = []
        count = 0
        for record_hash in record_hashes:
            level, value = 0, leaf_hash(record_hash)
            self._kept(level, value)
            while stack and stack[-1][0] == level:
                value, level = node_hash(stack.pop()[1], value), level + 1
                self._kept(level, value)
            stack.append((level, value))
            count += 1
        if count != size:
            raise ValueError(f"the chain holds {count} records, not {size}")
        self._stack = stack
        self.root = (self._fold(self.levels + 1) if size else hashlib.sha256(b"").digest()).hex()

    def _kept(self, level: int, value: bytes) -> None:
        if self._complete is not None:
            self._complete[level] += value

    def _fold(self, below_level: int) -> bytes:
        """The partial subtree at the right edge made of the stack's subtrees below `below_level`."""
        parts = [value for level, value in self._stack if level < below_level]
        value = parts.pop()
        while parts:
            value = node_hash(parts.pop(), value)
        return value

    def proof(self, seq: int) -> list[str]:
        """Record #seq's inclusion proof (RFC 9162 2.1.3.1); the tree must have been built with `keep`."""
        if self._complete is None:
            raise ValueError("this tree kept no subtrees: build it with keep=True")
        leaf, path = seq - 1, []
        for level in range(self.levels):
            sibling = (leaf >> level) ^ 1
            if sibling << level >= self.size:
                continue  # no sibling here: the node is carried up as it is
            if (sibling + 1) << level <= self.size:  # complete: kept
                path.append(bytes(self._complete[level][sibling * 32 : (sibling + 1) * 32]).hex())
            else:
                path.append(self._fold(level).hex())
        return path


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
