"""The Merkle tree over the chain against RFC 9162's definitions (section 2.1.1 and 2.1.3), written out directly."""

import hashlib

import pytest

from investigations.audit.merkle import Tree, leaf_hash, node_hash, proves

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run


def mth(leaves: list[str]) -> bytes:
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << (len(leaves) - 1).bit_length() - 1  # the largest power of two smaller than n
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[str]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = 1 << (len(leaves) - 1).bit_length() - 1
    return [*path(m, leaves[:k]), mth(leaves[k:])] if m < k else [*path(m - k, leaves[k:]), mth(leaves[:k])]


def test_heads_and_proofs_are_rfc_9162s_for_every_size_and_leaf():
    for size in range(1, 70):
        hashes = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(size)]
        built = Tree(iter(hashes), size, keep=True)
        assert built.root == mth(hashes).hex()
        for seq in range(1, size + 1):
            proof = built.proof(seq)
            assert proof == [node.hex() for node in path(seq - 1, hashes)]
            assert proves(hashes[seq - 1], seq, size, proof, built.root)
            if size > 1:
                assert not proves(hashes[seq % size], seq, size, proof, built.root)  # another record
                assert not proves(hashes[seq - 1], seq % size + 1, size, proof, built.root)  # another place
